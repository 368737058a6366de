//! Entry points for the fuzz targets in `fuzz/`, not API. Every other module is private to the
//! crate (so the compiler finds dead code); this façade is all the fuzz crate can reach.

pub use crate::login::cache::fuzz::decode_entry as cache_entry;
pub use crate::login::callback::fuzz::callback_answer;
pub use crate::login::credential::ExecInfo;
pub use crate::login::loopback::fuzz::callback_query;
pub use crate::login::token::IdTokenInfo;
