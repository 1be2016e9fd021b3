//! Small helpers shared by the features.

pub mod gate;
pub mod html;
pub mod http_error;
pub mod password;
pub mod rate;
