//! The black-box learned baseline of issue 12: a U-Net that post-processes the zero-filled
//! image (`models/sparsemap_train/unet.py`, its ONNX contract in that module's docs).
//!
//! Input `image` `[1, 2, N_y, N_x]` f32: the real and imaginary parts of `F^H y` divided by the
//! 99th percentile of its magnitude (the scaling of DESIGN §3.6); output `denoised`, the same
//! shape and scale. The runner multiplies the scale back, so the image is on the scale of
//! `F^H y` like every other method's. Planned once per grid (tract optimises for concrete
//! shapes) and run on one thread.

use anyhow::{anyhow, ensure, Context, Result};
use num_complex::Complex32;
use sparsemap_core::recon::{percentile, SCALE_PERCENTILE};
use sparsemap_core::Shape;
use sparsemap_edge::guard::catch_panic;
use sparsemap_edge::lambda_net::parse_onnx;
use sparsemap_edge::limits;
use std::path::Path;
use tract_onnx::prelude::*;

/// The contract version this runner understands (`sparsemap.unet.version`).
pub const UNET_CONTRACT_VERSION: &str = "1";

/// A U-Net planned for one grid.
pub struct UnetPlan {
    name: String,
    shape: Shape,
    runnable: Arc<TypedRunnableModel>,
    magnitudes: Vec<f32>,
}

impl UnetPlan {
    /// Reads `path`, checks its metadata and that the grid is a multiple of its
    /// `sparsemap.grid_multiple`, and plans it for `shape`. Errors name the file.
    pub fn new(path: &Path, shape: Shape) -> Result<Self> {
        let name = path.display().to_string();
        let bytes = limits::read_regular_file(path, limits::MAX_MODEL_BYTES, "U-Net model")?;
        let (proto, props) = parse_onnx(&bytes, &name)?;
        let version = props.get("sparsemap.unet.version").ok_or_else(|| {
            anyhow!(
                "{name}: not a sparsemap U-Net model (metadata_props has no sparsemap.unet.version; \
                 make one with `python -m sparsemap_train.unet`)"
            )
        })?;
        ensure!(
            version == UNET_CONTRACT_VERSION,
            "{name}: unsupported sparsemap.unet.version {version:?} (this runner understands \
             {UNET_CONTRACT_VERSION:?})"
        );
        let multiple: usize = props
            .get("sparsemap.grid_multiple")
            .and_then(|text| text.parse().ok())
            .filter(|&m| m >= 1)
            .ok_or_else(|| {
                anyhow!("{name}: sparsemap.grid_multiple is missing or not a positive integer")
            })?;
        let (n_y, n_x) = (shape.n_y(), shape.n_x());
        ensure!(
            n_y % multiple == 0 && n_x % multiple == 0,
            "{name}: the grid {n_y}x{n_x} is not a multiple of {multiple} (sparsemap.grid_multiple)"
        );
        let runnable = catch_panic(&name, "tract's model planning", || {
            let mut model = tract_onnx::onnx()
                .with_ignore_output_shapes(true)
                .model_for_proto_model(&proto)
                .with_context(|| format!("{name}: tract cannot load the model"))?;
            model
                .set_input_fact(0, f32::fact([1, 2, n_y, n_x]).into())
                .with_context(|| format!("{name}: binding the grid {n_y}x{n_x}"))?;
            model
                .into_optimized()
                .with_context(|| {
                    format!("{name}: tract cannot optimise the model for {n_y}x{n_x}")
                })?
                .into_runnable()
                .with_context(|| format!("{name}: tract cannot plan the model"))
        })?;
        Ok(Self {
            name,
            shape,
            runnable,
            magnitudes: vec![0.0; shape.len()],
        })
    }

    /// Replaces the zero-filled image `F^H y` in `image` (row-major, the plan's grid) by the
    /// U-Net's, on the scale of `F^H y` (after an error its values are unspecified).
    pub fn run(&mut self, image: &mut [Complex32]) -> Result<()> {
        let len = self.shape.len();
        ensure!(
            image.len() == len,
            "{}: the image has {} values, the plan's grid {} ({}x{})",
            self.name,
            image.len(),
            len,
            self.shape.n_y(),
            self.shape.n_x()
        );
        for (m, v) in self.magnitudes.iter_mut().zip(image.iter()) {
            *m = v.norm();
        }
        let p99 = percentile(&mut self.magnitudes, SCALE_PERCENTILE)
            .filter(|p| p.is_finite() && *p > f32::MIN_POSITIVE)
            .ok_or_else(|| {
                anyhow!(
                    "{}: the zero-filled image is zero or not finite (99th percentile of its magnitude), nothing to scale",
                    self.name
                )
            })?;
        let mut tensor = Tensor::zero::<f32>(&[1, 2, self.shape.n_y(), self.shape.n_x()])?;
        {
            let mut plain = tensor.try_as_plain_ram_mut()?;
            let (re, im) = plain.as_slice_mut::<f32>()?.split_at_mut(len);
            for ((r, i), v) in re.iter_mut().zip(im.iter_mut()).zip(image.iter()) {
                *r = v.re / p99;
                *i = v.im / p99;
            }
        }
        let runnable = &self.runnable;
        let name = &self.name;
        let result = catch_panic(name, "tract's model run", || {
            runnable
                .run(tvec!(tensor.into()))
                .with_context(|| format!("{name}: tract failed to run the model"))
        })?;
        let output = result[0].cast_to::<f32>()?;
        ensure!(
            output.shape() == [1, 2, self.shape.n_y(), self.shape.n_x()],
            "{name}: the output has shape {:?}, expected [1, 2, {}, {}]",
            output.shape(),
            self.shape.n_y(),
            self.shape.n_x()
        );
        let plain = output.try_as_plain_ram()?;
        let values = plain.as_slice::<f32>()?;
        let (re, im) = values.split_at(len);
        for ((o, r), i) in image.iter_mut().zip(re).zip(im) {
            ensure!(
                r.is_finite() && i.is_finite(),
                "{name}: the network's output is not finite"
            );
            *o = Complex32::new(r * p99, i * p99);
        }
        Ok(())
    }
}
