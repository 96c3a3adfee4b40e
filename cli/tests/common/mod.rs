//! Helpers for the CLI tests: hand-written safetensors files in fla's layout (written with the
//! `safetensors` crate directly, as another program would), unique temp dirs, running the binary.
#![allow(dead_code)]

use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh, empty directory under the system temp dir (unique per test and process).
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("glacheck-cli-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Deterministic values in [-1, 1) (splitmix64), rounded to bf16 so every dtype holds them exactly.
///
/// Deliberately not gla-fixtures' generator (`gla_fixtures::gen`): these tests feed the binary
/// files written the way another program would write them, with numbers glacheck's own code did
/// not produce (and the tests' inputs stay what they were).
pub fn values(seed: u64, n: usize) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let u = (z >> 11) as f64 / (1u64 << 53) as f64;
            half::bf16::from_f64(2.0 * u - 1.0).to_f64()
        })
        .collect()
}

/// Log gates in [-1/8, 0] (mild decay), bf16-exact.
pub fn gates(seed: u64, n: usize) -> Vec<f64> {
    values(seed, n)
        .into_iter()
        .map(|x| half::bf16::from_f64(-(x.abs()) / 8.0).to_f64())
        .collect()
}

/// A tensor to write: name, shape, values (f64) or ints.
pub struct T {
    pub name: String,
    pub shape: Vec<usize>,
    pub vals: Vec<f64>,
    pub dtype: Dtype,
}

impl T {
    pub fn new(name: &str, shape: &[usize], vals: Vec<f64>, dtype: Dtype) -> T {
        assert_eq!(shape.iter().product::<usize>(), vals.len(), "{name}");
        T {
            name: name.into(),
            shape: shape.to_vec(),
            vals,
            dtype,
        }
    }
}

fn encode(t: &T) -> Vec<u8> {
    match t.dtype {
        Dtype::F64 => t.vals.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Dtype::F32 => t
            .vals
            .iter()
            .flat_map(|&x| (x as f32).to_le_bytes())
            .collect(),
        Dtype::BF16 => t
            .vals
            .iter()
            .flat_map(|&x| half::bf16::from_f64(x).to_le_bytes())
            .collect(),
        Dtype::F16 => t
            .vals
            .iter()
            .flat_map(|&x| half::f16::from_f64(x).to_le_bytes())
            .collect(),
        Dtype::I32 => t
            .vals
            .iter()
            .flat_map(|&x| (x as i32).to_le_bytes())
            .collect(),
        Dtype::I64 => t
            .vals
            .iter()
            .flat_map(|&x| (x as i64).to_le_bytes())
            .collect(),
        d => panic!("unsupported test dtype {d:?}"),
    }
}

/// Write tensors with the `safetensors` crate.
pub fn write(path: &Path, tensors: &[T], metadata: &[(&str, &str)]) {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(encode).collect();
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            (
                t.name.clone(),
                TensorView::new(t.dtype, t.shape.clone(), b).unwrap(),
            )
        })
        .collect();
    let meta: Option<HashMap<String, String>> = if metadata.is_empty() {
        None
    } else {
        Some(
            metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    };
    let out = safetensors::serialize(views, &meta).unwrap();
    std::fs::write(path, out).unwrap();
}

/// Sizes of a generated problem.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub b: usize,
    pub t: usize,
    pub h: usize,
    pub k: usize,
    pub v: usize,
}

/// The inputs of a GLA problem in fla's layout, stored as `dtype`: q, k, v, g, h0, do, dht
/// (backward seeds only when `backward`).
pub fn problem_tensors(s: Shape, dtype: Dtype, backward: bool, seed: u64) -> Vec<T> {
    let Shape { b, t, h, k, v } = s;
    let mut out = vec![
        T::new("q", &[b, t, h, k], values(seed, b * t * h * k), dtype),
        T::new("k", &[b, t, h, k], values(seed + 1, b * t * h * k), dtype),
        T::new("v", &[b, t, h, v], values(seed + 2, b * t * h * v), dtype),
        T::new("g", &[b, t, h, k], gates(seed + 3, b * t * h * k), dtype),
        T::new("h0", &[b, h, k, v], values(seed + 4, b * h * k * v), dtype),
    ];
    if backward {
        out.push(T::new(
            "do",
            &[b, t, h, v],
            values(seed + 5, b * t * h * v),
            dtype,
        ));
        out.push(T::new(
            "dht",
            &[b, h, k, v],
            values(seed + 6, b * h * k * v),
            dtype,
        ));
    }
    out
}

/// Tensors read back: name -> (dtype, shape, values as f64).
pub type Tensors = HashMap<String, (Dtype, Vec<usize>, Vec<f64>)>;

/// Read a safetensors file: the tensors and the metadata.
pub fn read(path: &Path) -> (Tensors, HashMap<String, String>) {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let d = view.data();
        let vals: Vec<f64> = match view.dtype() {
            Dtype::F64 => d
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            Dtype::F32 => d
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            other => panic!("unexpected dtype {other:?}"),
        };
        out.insert(name, (view.dtype(), view.shape().to_vec(), vals));
    }
    (out, meta.metadata().clone().unwrap_or_default())
}

/// Run the glacheck binary.
pub fn glacheck(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_glacheck"))
        .args(args)
        .output()
        .expect("run glacheck")
}

/// stdout and stderr as strings.
pub fn texts(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Path as &str.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
