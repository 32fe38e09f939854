//! The tch (libtorch) backend: a TorchScript module loaded on a device, and calls into it that
//! allocate nothing on the Rust side.
//!
//! tch's `CModule::method_is` builds a `Vec` and a `CString` per call; on the policy path that is
//! an allocation per tick. `Module` keeps the raw module handle and calls `atm_method_` with
//! method names that are `'static` C strings and arguments in stack arrays. Tensors handed in are
//! usually `HostBuf`s: Rust-owned memory that libtorch reads in place (CPU) or that is copied to
//! the device with one `copy_` (CUDA). Whatever libtorch allocates inside a call is its own
//! business (measured by `tests/policy_alloc.rs`, not avoided).
//!
//! Not for: knowing what a model means (that is the contract and the controllers).

use std::ffi::{c_char, CStr};
use std::fmt;
use std::path::Path;
use tch::{Device, Kind, Tensor};
use torch_sys::{CIValue, C_tensor};

/// A libtorch failure: its message (the first line of libtorch's, which is often long).
#[derive(Clone, Debug, PartialEq)]
pub struct TorchError(pub String);

impl fmt::Display for TorchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TorchError {
    /// Whether libtorch said the method does not exist (as opposed to failing inside it).
    pub(crate) fn is_missing_method(&self) -> bool {
        self.0.contains("is not defined") || self.0.contains("does not have a method")
    }
}

/// The pending libtorch error, if the last call set one. Allocates only when there is an error.
fn last_error() -> Result<(), TorchError> {
    // SAFETY: returns a malloc'd C string or null; we own it and free it below.
    let p = unsafe { torch_sys::get_and_reset_last_err() };
    if p.is_null() {
        return Ok(());
    }
    // SAFETY: non-null, NUL-terminated, from libtorch's strdup.
    let msg = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    // SAFETY: allocated with malloc by torch-sys's C++ side.
    unsafe { libc::free(p as *mut libc::c_void) };
    Err(TorchError(summary(&msg)))
}

/// The line of a libtorch error a person needs. An exception raised inside a TorchScript method
/// comes as "The following operation failed in the TorchScript interpreter.", a traceback, and
/// the exception itself on its last lines ("builtins.RuntimeError: <the model's message>"): that
/// message, not the first line, says what went wrong. Other errors say it on their first line.
pub fn summary(msg: &str) -> String {
    let first = msg.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("libtorch error");
    if !first.starts_with("The following operation failed in the TorchScript interpreter") {
        return first.to_string();
    }
    // The exception's line: `builtins.RuntimeError: ...`, `torch.jit.Error: ...` (after the
    // traceback's source lines, which are code).
    let lines: Vec<&str> = msg.lines().map(str::trim).collect();
    let is_exception = |l: &str| {
        l.split_once(": ").is_some_and(|(name, _)| {
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                && (name.ends_with("Error") || name.ends_with("Exception") || name.ends_with("Warning"))
        })
    };
    let Some(at) = lines.iter().rposition(|l| is_exception(l)) else { return first.to_string() };
    let text = lines[at..].iter().filter(|l| !l.is_empty()).copied().collect::<Vec<_>>().join(" ");
    text.strip_prefix("builtins.").unwrap_or(&text).to_string()
}

/// Parses `cpu`, `cuda` or `cuda:N`.
pub(crate) fn parse_device(s: &str) -> Result<Device, String> {
    match s {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(0)),
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => Ok(Device::Cuda(n)),
            _ => Err(format!("expected \"cpu\", \"cuda\" or \"cuda:N\", got {s:?}")),
        },
    }
}

/// Sets libtorch's intra-op and inter-op thread counts (process-wide). Inter-op threads can only
/// be set once, before any parallel work; a second attempt is ignored by libtorch.
pub(crate) fn set_threads(intra: u32, inter: u32) {
    keep_freed_memory();
    tch::set_num_threads(intra.max(1) as i32);
    // SAFETY: plain setter; libtorch reports (and we ignore) an error if the pool already started.
    unsafe { torch_sys::at_set_num_interop_threads(inter.max(1) as i32) };
    let _ = last_error();
}

/// Keeps glibc from returning libtorch's freed tensor memory to the kernel. libtorch allocates
/// its intermediate tensors per call (a [256, 384] activation is 384 KiB); above glibc's mmap
/// threshold each one is a fresh mapping, so every model call would page-fault its activations in
/// again, and heap trimming does the same to memory below it. Process-wide, set once before the
/// first model runs; it also keeps memory locked by `mlockall` from being handed back and re-faulted.
pub(crate) fn keep_freed_memory() {
    const MMAP_THRESHOLD_BYTES: i32 = 32 << 20;
    const TRIM_THRESHOLD_BYTES: i32 = 512 << 20;
    // SAFETY: mallopt only changes allocator tunables; called before the policy thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
    }
}

extern "C" {
    fn locod_inference_mode_enter();
    fn locod_inference_mode_exit();
    fn locod_inference_mode_is_enabled() -> i32;
}

/// libtorch's InferenceMode on the calling thread while the guard lives (src/policy/inference_mode.cpp;
/// tch exposes only grad mode): model calls skip autograd's bookkeeping (version counters, view
/// tracking, the autograd dispatch keys), a few percent of a plan measured against
/// `torch.no_grad()`. Nestable; allocates nothing. Tensors created inside are inference tensors,
/// which must not be modified in place outside one: the controllers keep none across ticks except
/// the recurrent state, which only their model calls read.
pub struct InferenceMode {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl InferenceMode {
    pub(crate) fn enter() -> InferenceMode {
        // SAFETY: thread-local state only; paired with the exit in Drop on the same thread (the
        // guard is !Send).
        unsafe { locod_inference_mode_enter() };
        InferenceMode { _not_send: std::marker::PhantomData }
    }

    /// Whether the calling thread is in InferenceMode.
    pub fn is_enabled() -> bool {
        // SAFETY: reads thread-local state.
        unsafe { locod_inference_mode_is_enabled() != 0 }
    }
}

impl Drop for InferenceMode {
    fn drop(&mut self) {
        // SAFETY: see `enter`.
        unsafe { locod_inference_mode_exit() };
    }
}

/// An argument of a method call.
#[derive(Clone, Copy)]
pub enum Arg<'a> {
    T(&'a Tensor),
    F(f64),
}

/// A TorchScript module, in eval mode, on one device.
pub struct Module {
    ptr: *mut torch_sys::CModule_,
    device: Device,
}

// SAFETY: a TorchScript module may be moved between threads; locod calls it from one thread at a
// time (the policy thread owns it), which is what libtorch requires of `Method::operator()` with
// shared state such as the profiling executor.
unsafe impl Send for Module {}

impl Drop for Module {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from atm_load_on_device and is freed once.
        unsafe { torch_sys::atm_free(self.ptr) };
    }
}

fn device_c_int(d: Device) -> i32 {
    match d {
        Device::Cpu => -1,
        Device::Cuda(n) => n as i32,
        Device::Mps => -2,
        Device::Vulkan => -3,
    }
}

impl Module {
    /// Loads `path` onto `device` and switches it to eval mode.
    pub fn load(path: &Path, device: Device) -> Result<Module, TorchError> {
        if let Device::Cuda(n) = device {
            if !tch::Cuda::is_available() || n as i64 >= tch::Cuda::device_count() {
                return Err(TorchError(format!("device cuda:{n} is not available to libtorch")));
            }
        }
        let path_c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| TorchError("the model path contains a NUL byte".into()))?;
        // SAFETY: valid NUL-terminated path; the result is checked through last_error.
        let ptr = unsafe { torch_sys::atm_load_on_device(path_c.as_ptr(), device_c_int(device)) };
        last_error()?;
        if ptr.is_null() {
            return Err(TorchError("libtorch returned no module".into()));
        }
        let m = Module { ptr, device };
        // SAFETY: valid module handle.
        unsafe { torch_sys::atm_eval(m.ptr) };
        last_error()?;
        Ok(m)
    }

    pub fn device(&self) -> Device {
        self.device
    }

    fn call_raw(&self, method: &CStr, args: &[Arg]) -> Result<*mut CIValue, TorchError> {
        const MAX_ARGS: usize = 4;
        assert!(args.len() <= MAX_ARGS, "at most {MAX_ARGS} arguments");
        let mut ivs: [*mut CIValue; MAX_ARGS] = [std::ptr::null_mut(); MAX_ARGS];
        for (slot, a) in ivs.iter_mut().zip(args) {
            // SAFETY: the tensor handle is valid for the call (borrowed); ati_tensor copies the
            // handle (a refcount), ati_double a number.
            *slot = unsafe {
                match a {
                    Arg::T(t) => torch_sys::ati_tensor(t.as_ptr() as *mut C_tensor),
                    Arg::F(v) => torch_sys::ati_double(*v),
                }
            };
        }
        // SAFETY: module and ivalue handles are valid; `method` is NUL-terminated.
        let out = unsafe {
            torch_sys::atm_method_(self.ptr, method.as_ptr() as *mut c_char, ivs.as_ptr(), args.len() as i32)
        };
        let err = last_error();
        for iv in &ivs[..args.len()] {
            // SAFETY: created above, freed once.
            unsafe { torch_sys::ati_free(*iv) };
        }
        err?;
        if out.is_null() {
            return Err(TorchError("libtorch returned no value".into()));
        }
        Ok(out)
    }

    /// Calls `method` and returns its single tensor result.
    pub fn call(&self, method: &CStr, args: &[Arg]) -> Result<Tensor, TorchError> {
        let out = self.call_raw(method, args)?;
        // SAFETY: `out` is a valid ivalue we own; freed below whatever it holds.
        let r = unsafe {
            if torch_sys::ati_tag(out) == 1 {
                let t = torch_sys::ati_to_tensor(out);
                last_error().map(|_| Tensor::from_ptr(t))
            } else {
                Err(TorchError(format!("{} returned something other than a tensor", method.to_string_lossy())))
            }
        };
        // SAFETY: see above.
        unsafe { torch_sys::ati_free(out) };
        r
    }

    /// Calls `method` and returns its two tensor results (a `Tuple[Tensor, Tensor]`).
    pub(crate) fn call2(&self, method: &CStr, args: &[Arg]) -> Result<(Tensor, Tensor), TorchError> {
        let out = self.call_raw(method, args)?;
        // SAFETY: `out` is a valid ivalue we own; the tuple's elements are new ivalues we own.
        let r = unsafe {
            if torch_sys::ati_tag(out) == 5 && torch_sys::ati_tuple_length(out) == 2 {
                let mut items: [*mut CIValue; 2] = [std::ptr::null_mut(); 2];
                torch_sys::ati_to_tuple(out, items.as_mut_ptr(), 2);
                let tensors = if torch_sys::ati_tag(items[0]) == 1 && torch_sys::ati_tag(items[1]) == 1 {
                    let a = Tensor::from_ptr(torch_sys::ati_to_tensor(items[0]));
                    let b = Tensor::from_ptr(torch_sys::ati_to_tensor(items[1]));
                    Ok((a, b))
                } else {
                    Err(TorchError(format!("{} returned a tuple of non-tensors", method.to_string_lossy())))
                };
                torch_sys::ati_free(items[0]);
                torch_sys::ati_free(items[1]);
                last_error().and(tensors)
            } else {
                Err(TorchError(format!("{} did not return a pair of tensors", method.to_string_lossy())))
            }
        };
        // SAFETY: see above.
        unsafe { torch_sys::ati_free(out) };
        r
    }

    /// The module's parameters by dotted name (`dynamics.0.weight`), as tensors that share the
    /// module's storage: changing one in place changes the module. For training; allocates.
    pub fn named_parameters(&self) -> Result<Vec<(String, Tensor)>, TorchError> {
        extern "C" fn add(data: *mut libc::c_void, name: *const c_char, t: *mut C_tensor) {
            // SAFETY: `data` is the Vec passed below; `name` a NUL-terminated string and `t` a new
            // tensor handle we own, both from atm_named_parameters for this call only.
            unsafe {
                let v = &mut *(data as *mut Vec<(String, Tensor)>);
                v.push((CStr::from_ptr(name).to_string_lossy().into_owned(), Tensor::from_ptr(t)));
            }
        }
        let mut v: Vec<(String, Tensor)> = Vec::new();
        // SAFETY: valid module handle; the callback only runs during this call.
        unsafe { torch_sys::atm_named_parameters(self.ptr, &mut v as *mut _ as *mut libc::c_void, add) };
        last_error()?;
        Ok(v)
    }

    /// Sets the string attribute `name` (which the module must already have).
    pub fn set_str_attr(&mut self, name: &str, value: &str) -> Result<(), TorchError> {
        extern "C" {
            fn locod_module_set_str_attr(
                m: *mut libc::c_void,
                name: *const c_char,
                value: *const c_char,
                error: *mut *mut c_char,
            ) -> i32;
        }
        let nul = |_| TorchError("a NUL byte in an attribute".into());
        let (name, value) = (std::ffi::CString::new(name).map_err(nul)?, std::ffi::CString::new(value).map_err(nul)?);
        let mut error: *mut c_char = std::ptr::null_mut();
        // SAFETY: valid module handle (a torch::jit::script::Module*) and NUL-terminated strings;
        // on failure `error` receives a malloc'd message we free.
        let rc = unsafe {
            locod_module_set_str_attr(self.ptr as *mut libc::c_void, name.as_ptr(), value.as_ptr(), &mut error)
        };
        if rc == 0 {
            return Ok(());
        }
        // SAFETY: set by the C++ side with strdup when rc != 0.
        let message = unsafe {
            let m = CStr::from_ptr(error).to_string_lossy().into_owned();
            libc::free(error as *mut libc::c_void);
            m
        };
        Err(TorchError(summary(&message)))
    }

    /// Saves the module (code, parameters, attributes) to `path`.
    pub fn save(&self, path: &Path) -> Result<(), TorchError> {
        let path_c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| TorchError("the path contains a NUL byte".into()))?;
        // SAFETY: valid module handle and NUL-terminated path.
        unsafe { torch_sys::atm_save(self.ptr, path_c.as_ptr() as *mut c_char) };
        last_error()
    }

    /// Calls a `() -> str` method (the contract's `locod_spec`). Load time only: allocates.
    pub fn call_str(&self, method: &CStr) -> Result<String, TorchError> {
        let out = self.call_raw(method, &[])?;
        // SAFETY: valid ivalue; ati_to_string returns a malloc'd copy we free.
        let r = unsafe {
            if torch_sys::ati_tag(out) == 9 {
                let p = torch_sys::ati_to_string(out);
                if p.is_null() {
                    last_error().and(Err(TorchError("no string".into())))
                } else {
                    let s = CStr::from_ptr(p).to_string_lossy().into_owned();
                    libc::free(p as *mut libc::c_void);
                    Ok(s)
                }
            } else {
                Err(TorchError(format!("{} did not return a str", method.to_string_lossy())))
            }
        };
        // SAFETY: see above.
        unsafe { torch_sys::ati_free(out) };
        r
    }
}

/// Up to 4 dimensions of a tensor, without allocating (`Tensor::size` returns a `Vec`).
pub fn shape(t: &Tensor) -> ([i64; 4], usize) {
    let mut s = [0i64; 4];
    // SAFETY: valid tensor handle.
    let dim = unsafe { torch_sys::at_dim(t.as_ptr() as *mut C_tensor) };
    if dim <= 4 {
        // SAFETY: `s` has room for `dim` entries.
        unsafe { torch_sys::at_shape(t.as_ptr() as *mut C_tensor, s.as_mut_ptr()) };
    }
    (s, dim)
}

/// Whether `t` has exactly the dimensions `want`.
pub(crate) fn has_shape(t: &Tensor, want: &[i64]) -> bool {
    let (s, dim) = shape(t);
    dim == want.len() && s[..dim] == *want
}

/// Copies the float32 values of `t` (any device, exactly `dst.len()` elements) into `dst`.
pub(crate) fn read_f32(t: &Tensor, dst: &mut [f32]) -> Result<(), TorchError> {
    let (s, dim) = shape(t);
    let numel: i64 = if dim <= 4 { s[..dim].iter().product() } else { -1 };
    if numel != dst.len() as i64 {
        return Err(TorchError(format!("expected {} values, the model returned {numel}", dst.len())));
    }
    let host = if t.device() == Device::Cpu && t.kind() == Kind::Float && t.is_contiguous() {
        t.shallow_clone()
    } else {
        t.f_to_device(Device::Cpu)
            .and_then(|t| t.f_to_kind(Kind::Float))
            .and_then(|t| t.f_contiguous())
            .map_err(|e| TorchError(e.to_string()))?
    };
    // SAFETY: `host` is a contiguous CPU float tensor of exactly dst.len() elements, alive here.
    let src = unsafe { std::slice::from_raw_parts(host.data_ptr() as *const f32, dst.len()) };
    dst.copy_from_slice(src);
    Ok(())
}

/// Rust-owned float32 memory that libtorch sees as a tensor: in place on the CPU, through one
/// `copy_` per `upload` on another device. Never resized, so the tensor's pointer stays valid.
pub(crate) struct HostBuf {
    data: Box<[f32]>,
    host: Tensor,
    dev: Tensor,
    on_cpu: bool,
}

// SAFETY: the tensors alias `data`, which moves with the struct (a Box: the heap block does not
// move); nothing else holds them.
unsafe impl Send for HostBuf {}

impl HostBuf {
    pub fn new(shape: &[i64], device: Device) -> Result<HostBuf, TorchError> {
        let n: i64 = shape.iter().product();
        let data = vec![0.0f32; n as usize].into_boxed_slice();
        // SAFETY: `data` lives as long as the tensor (both fields of this struct; `host` is dropped
        // first, see Drop) and is never reallocated.
        let host = unsafe { Tensor::f_from_blob(data.as_ptr() as *const u8, shape, &[], Kind::Float, Device::Cpu) }
            .map_err(|e| TorchError(e.to_string()))?;
        let on_cpu = device == Device::Cpu;
        let dev = if on_cpu {
            host.shallow_clone()
        } else {
            Tensor::f_zeros(shape, (Kind::Float, device)).map_err(|e| TorchError(e.to_string()))?
        };
        Ok(HostBuf { data, host, dev, on_cpu })
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.data
    }

    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// Makes the device tensor see the host values (a no-op on the CPU).
    pub(crate) fn upload(&mut self) -> Result<(), TorchError> {
        if !self.on_cpu {
            self.dev.f_copy_(&self.host).map_err(|e| TorchError(e.to_string()))?;
        }
        Ok(())
    }

    /// The tensor to pass to the model (valid after `upload`).
    pub fn tensor(&self) -> &Tensor {
        &self.dev
    }
}

impl Drop for HostBuf {
    fn drop(&mut self) {
        // Release libtorch's views of `data` before the Box frees it.
        self.dev = Tensor::new();
        self.host = Tensor::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inference_mode_nests_and_ends_with_its_last_guard() {
        assert!(!InferenceMode::is_enabled());
        {
            let _outer = InferenceMode::enter();
            assert!(InferenceMode::is_enabled());
            {
                let _inner = InferenceMode::enter();
                assert!(InferenceMode::is_enabled());
            }
            assert!(InferenceMode::is_enabled(), "the outer guard still holds");
            // Tensors made here are inference tensors; reading them afterwards is fine.
            let t = Tensor::ones([3], (Kind::Float, Device::Cpu)) * 2.0;
            assert_eq!(t.sum(Kind::Float).double_value(&[]), 6.0);
        }
        assert!(!InferenceMode::is_enabled());
        // Other threads are not affected.
        let _guard = InferenceMode::enter();
        assert!(!std::thread::spawn(InferenceMode::is_enabled).join().unwrap());
    }
}
