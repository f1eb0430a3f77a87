//! The last line of defence around dependencies that may panic on crafted input (tract's
//! ONNX loading and planning): [`catch_panic`] turns a panic into an error naming the file,
//! and the panic is not printed, so the user sees one line. Inputs are validated before they
//! reach these dependencies; this only catches what validation missed.

use anyhow::{anyhow, Result};
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// Set while this thread runs inside [`catch_panic`].
    static GUARDED: Cell<bool> = const { Cell::new(false) };
    /// The message of the last panic caught on this thread.
    static MESSAGE: RefCell<Option<String>> = const { RefCell::new(None) };
}

static INSTALL: Once = Once::new();

/// Chains a hook that records (instead of printing) panics raised inside [`catch_panic`];
/// panics elsewhere still reach the previous hook.
fn install_hook() {
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if GUARDED.with(Cell::get) {
                let payload = info.payload();
                let text = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_string());
                let at = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                MESSAGE.with(|m| *m.borrow_mut() = Some(format!("{text}{at}")));
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f`; a panic inside it becomes the error "`context`: `what` panicked: message".
pub fn catch_panic<R>(context: &str, what: &str, f: impl FnOnce() -> Result<R>) -> Result<R> {
    install_hook();
    let outer = GUARDED.with(|g| g.replace(true));
    // AssertUnwindSafe: on a panic nothing `f` touched is used again; the caller gets an
    // error and drops whatever `f` was building.
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(outer));
    match result {
        Ok(result) => result,
        Err(_) => {
            let message = MESSAGE
                .with(|m| m.borrow_mut().take())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(anyhow!(
                "{context}: {what} panicked (the input is malformed in a way the checks did not catch): {}",
                message.replace('\n', " ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_naming_the_context() {
        let err = catch_panic("model.onnx", "tract", || -> Result<()> {
            panic!("index out of bounds")
        })
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("model.onnx: tract panicked"), "{err}");
        assert!(err.contains("index out of bounds"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn results_pass_through() {
        assert_eq!(catch_panic("x", "y", || Ok(3)).unwrap(), 3);
        assert!(
            catch_panic("x", "y", || -> Result<()> { Err(anyhow!("plain")) })
                .unwrap_err()
                .to_string()
                .contains("plain")
        );
    }
}
