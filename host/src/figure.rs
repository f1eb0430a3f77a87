//! Figure grids for `eval`: 8-bit greyscale PNG tiles in rows and columns, one window for the
//! whole figure so that tiles are comparable, the caption in a PNG `tEXt` chunk.

use anyhow::{ensure, Context, Result};
use std::io::BufWriter;
use std::path::Path;

/// One image of the grid, row-major `[n_y][n_x]`.
pub struct Tile {
    pub values: Vec<f32>,
}

/// Gap between tiles, in pixels (mid grey, so black backgrounds stay distinguishable).
pub const GAP: usize = 4;
const GAP_VALUE: u8 = 128;

/// Writes `rows` of equally sized tiles to `path`: value `0` is black, `white` and above are
/// white. Rows may have different lengths; missing tiles are left at the gap colour.
pub fn write_grid(
    path: &Path,
    n_y: usize,
    n_x: usize,
    rows: &[Vec<Tile>],
    white: f32,
    caption: &str,
) -> Result<()> {
    ensure!(
        white > 0.0 && white.is_finite(),
        "figure window {white} must be positive"
    );
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    ensure!(
        columns > 0 && !rows.is_empty(),
        "figure {} has no tiles",
        path.display()
    );
    let width = columns * n_x + (columns - 1) * GAP;
    let height = rows.len() * n_y + (rows.len() - 1) * GAP;
    let mut pixels = vec![GAP_VALUE; width * height];
    for (r, row) in rows.iter().enumerate() {
        for (c, tile) in row.iter().enumerate() {
            ensure!(
                tile.values.len() == n_y * n_x,
                "figure tile ({r}, {c}) has {} values, expected {n_y}x{n_x}",
                tile.values.len()
            );
            let (top, left) = (r * (n_y + GAP), c * (n_x + GAP));
            for y in 0..n_y {
                for x in 0..n_x {
                    let v = tile.values[y * n_x + x] / white;
                    let byte = if v.is_finite() {
                        (v.clamp(0.0, 1.0) * 255.0).round() as u8
                    } else {
                        255
                    };
                    pixels[(top + y) * width + left + x] = byte;
                }
            }
        }
    }
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), width as u32, height as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .add_text_chunk("Description".to_string(), caption.to_string())
        .with_context(|| format!("writing the caption of {}", path.display()))?;
    let mut writer = encoder
        .write_header()
        .with_context(|| format!("writing {}", path.display()))?;
    writer
        .write_image_data(&pixels)
        .with_context(|| format!("writing {}", path.display()))?;
    writer
        .finish()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
