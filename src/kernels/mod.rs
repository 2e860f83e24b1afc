//! The hot paths: products with the weight matrix, element-wise non-linearities and bulk random
//! numbers. Everything that touches every unit of every chain goes through here, so that speed work
//! has one place to happen.

/// Compiles `$body` for baseline x86-64 and for AVX2+FMA, choosing at run time.
macro_rules! dispatch {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? $body:block) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU supports the features `avx2` was compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

mod approx;
mod cache;
mod dense;
mod random;
mod sparse;

pub use approx::{log_sum_exp, sigmoid_columns, softplus, softplus_columns, softplus_steps};
pub use cache::{CouplingCache, coupling_down, coupling_up};
pub use dense::correlate_into;
pub(crate) use dense::par_zip_apply;
pub use random::{CHAIN_BLOCK, ChainRng, fill_normal, fill_uniform, stream, uniform};
