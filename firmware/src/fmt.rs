//! Logging that routes to `defmt` with the `defmt` feature and to nothing otherwise
//! (the embassy pattern). Never `println!` in the library.
#![allow(unused_macros)]

#[cfg(feature = "defmt")]
macro_rules! debug {
    ($($arg:tt)*) => { ::defmt::debug!($($arg)*) };
}
#[cfg(feature = "defmt")]
macro_rules! info {
    ($($arg:tt)*) => { ::defmt::info!($($arg)*) };
}
#[cfg(feature = "defmt")]
macro_rules! warn {
    ($($arg:tt)*) => { ::defmt::warn!($($arg)*) };
}
#[cfg(feature = "defmt")]
macro_rules! error {
    ($($arg:tt)*) => { ::defmt::error!($($arg)*) };
}

// Without defmt the arguments are still type-checked (and count as used), then dropped.
#[cfg(not(feature = "defmt"))]
macro_rules! debug {
    ($($arg:expr),* $(,)?) => {{ $( let _ = &$arg; )* }};
}
#[cfg(not(feature = "defmt"))]
macro_rules! info {
    ($($arg:expr),* $(,)?) => {{ $( let _ = &$arg; )* }};
}
#[cfg(not(feature = "defmt"))]
macro_rules! warn {
    ($($arg:expr),* $(,)?) => {{ $( let _ = &$arg; )* }};
}
#[cfg(not(feature = "defmt"))]
macro_rules! error {
    ($($arg:expr),* $(,)?) => {{ $( let _ = &$arg; )* }};
}
