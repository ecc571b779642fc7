//! One module per technology. The binary chooses which by configuration.

pub mod blob;
pub mod cosmos;
pub mod embedded;
pub mod ocr;
pub mod servicebus;
