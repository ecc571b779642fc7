//! One module per technology. The binary chooses which by configuration.

pub mod azure;
pub mod embedded;
pub mod notify;
pub mod ocr;
