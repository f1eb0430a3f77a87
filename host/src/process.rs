//! Running a child process and measuring it: wall time around spawn and wait, and the
//! child's peak resident set size through GNU time (`/usr/bin/time -f %M`, which reads it
//! from `wait4`'s `ru_maxrss`; Debian package `time`). Without GNU time the peak is unknown
//! (`None`), never guessed.
//!
//! Used by [`crate::e2e`] (`sparsemap-host bench-e2e`) for the `sparsemap` processes and,
//! through [`crate::baselines::Bart::with_process_log`], for every BART process.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

/// Where Debian's `time` package puts GNU time.
pub const GNU_TIME: &str = "/usr/bin/time";

/// GNU time at [`GNU_TIME`], if it is there and is GNU's (BusyBox's `time` has no `-o`).
pub fn gnu_time() -> Option<PathBuf> {
    let program = PathBuf::from(GNU_TIME);
    let output = Command::new(&program).arg("--version").output().ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    text.contains("GNU").then_some(program)
}

/// One finished child process.
#[derive(Debug)]
pub struct Measured {
    pub output: Output,
    /// Wall time from spawn to exit (seconds), GNU time's start-up included (about 1 ms).
    pub seconds: f64,
    /// Peak RSS of the child (bytes), when measured with GNU time.
    pub peak_rss_bytes: Option<u64>,
}

/// Runs `command` to completion, capturing its output. With `time` (GNU time, see
/// [`gnu_time`]) the command runs under `time -f %M -o RSS_FILE`, where `rss_file` is a
/// path the caller owns; the file is read and removed afterwards.
pub fn run(command: &Command, time: Option<&Path>, rss_file: &Path) -> Result<Measured> {
    let program = command.get_program().to_owned();
    let mut actual = match time {
        Some(time) => {
            let mut wrapped = Command::new(time);
            wrapped
                .arg("-f")
                .arg("%M")
                .arg("-o")
                .arg(rss_file)
                .arg(&program)
                .args(command.get_args());
            wrapped
        }
        None => {
            let mut plain = Command::new(&program);
            plain.args(command.get_args());
            plain
        }
    };
    if let Some(dir) = command.get_current_dir() {
        actual.current_dir(dir);
    }
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => actual.env(key, value),
            None => actual.env_remove(key),
        };
    }
    let started = Instant::now();
    let output = actual
        .output()
        .with_context(|| format!("could not run {}", Path::new(&program).display()))?;
    let seconds = started.elapsed().as_secs_f64();
    let peak_rss_bytes = match time {
        Some(_) => {
            let text = std::fs::read_to_string(rss_file).ok();
            let _ = std::fs::remove_file(rss_file);
            // GNU time writes "Command exited with non-zero status N" before the value
            // when the command fails; the value is the last line.
            text.and_then(|t| t.lines().last().and_then(|l| l.trim().parse::<u64>().ok()))
                .map(|kib| kib * 1024)
        }
        None => None,
    };
    Ok(Measured {
        output,
        seconds,
        peak_rss_bytes,
    })
}
