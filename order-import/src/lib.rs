//! Moving in: import a legacy order system's history into the log (work in progress).

pub mod csv;
pub mod generate;
mod generate_csv;
pub mod legacy;
pub mod run;
pub mod source;
pub mod tell;
