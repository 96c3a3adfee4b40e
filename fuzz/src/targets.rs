//! The fuzz targets, one module each; every module's `run` is a `fn(&[u8])` registered in
//! [`crate::TARGETS`].

pub mod builder;
pub mod candidate;
pub mod metadata;
pub mod problem_file;
pub mod safetensors;
