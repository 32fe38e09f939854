//! What the linked libtorch offers on this machine: its version, threads and devices. The models
//! themselves are loaded by the controller kinds that use them.

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct LibtorchInfo {
    pub intra_op_threads: i32,
    pub cuda_available: bool,
    pub cuda_devices: i64,
}

pub fn info() -> LibtorchInfo {
    LibtorchInfo {
        intra_op_threads: tch::get_num_threads(),
        cuda_available: tch::Cuda::is_available(),
        cuda_devices: tch::Cuda::device_count(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn libtorch_loads_and_computes() {
        let info = super::info();
        assert!(info.intra_op_threads >= 1);
        let t = tch::Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
        let s: f64 = t.sum(tch::Kind::Float).double_value(&[]);
        assert_eq!(s, 6.0);
    }
}
