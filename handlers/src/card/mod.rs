//! The warranty card people show: the printable PDF with its verification QR code, the signed
//! verification link and the public page behind it.

pub mod ics;
pub mod page;
pub mod pdf;
pub mod token;
