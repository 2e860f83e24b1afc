//! The hot paths: products with the weight matrix, element-wise non-linearities and bulk random
//! numbers. Everything that touches every unit of every chain goes through here, so that speed work
//! has one place to happen.

/// Compiles `$body` for baseline x86-64, for AVX2+FMA and for AVX-512, running the one
/// [`Kernel::active`] names. The body is the same source each time, so every path gives the same
/// bits; only the vector width LLVM picks differs.
macro_rules! dispatch {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? $body:block) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
                fn avx512($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                match $crate::kernels::Kernel::active() {
                    // SAFETY: `Kernel::active` names only kernels the CPU supports.
                    $crate::kernels::Kernel::Avx512 => return unsafe { avx512($($arg),*) },
                    $crate::kernels::Kernel::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::kernels::Kernel::Portable => {}
                }
            }
            body($($arg),*)
        }
    };
}

mod approx;
mod cache;
mod cpu;
mod dense;
mod packed;
mod random;
mod sparse;

pub use approx::{log_sum_exp, sigmoid_columns, softplus, softplus_columns, softplus_steps};
pub use cache::{CouplingCache, coupling_down, coupling_up};
pub use cpu::{Caches, Kernel, caches, cpu_features, cpu_name, describe, set_kernel, table_budget};
pub use dense::correlate_into;
pub(crate) use dense::{par_zip_apply, par_zip_apply_mut};
pub use random::{CHAIN_BLOCK, ChainRng, fill_normal, fill_uniform, stream, uniform};
pub(crate) use random::{stream_from_words, stream_words};

/// Runs `bits` with every kernel this CPU supports and asserts that all return the same; the
/// kernel is global, so other tests running meanwhile may take another kernel, which changes
/// nothing of theirs.
#[cfg(test)]
pub(crate) fn assert_same_bits_on_every_kernel(mut bits: impl FnMut() -> Vec<u32>) {
    let before = Kernel::active();
    let results: Vec<(Kernel, Vec<u32>)> = (Kernel::ALL.into_iter())
        .filter(|k| k.supported())
        .map(|kernel| {
            set_kernel(kernel).unwrap();
            (kernel, bits())
        })
        .collect();
    set_kernel(before).unwrap();
    let (first, reference) = &results[0];
    for (kernel, bits) in &results[1..] {
        assert!(bits == reference, "{kernel} and {first} kernels differ");
    }
}
