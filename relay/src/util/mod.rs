//! Small helpers shared by the features.

pub mod addr;
pub mod bearer;
pub mod cookie;
pub mod gate;
pub mod html;
pub mod http_error;
pub mod page;
pub mod password;
pub mod path;
pub mod random;
pub mod rate;
