//! Which instruction set the kernels run with, and what the machine is: chosen once at run time
//! (one binary runs on any x86-64), overridable for users who want one path everywhere.

use std::sync::atomic::{AtomicU8, Ordering};

/// The instruction sets the crate's kernels (sums of selected columns, subset-sum tables, the
/// non-linearities, small products) are compiled for. Every kernel gives the same bits on every
/// path: the arithmetic is written out in order and never contracted into fused multiply-adds,
/// so the choice changes speed only (tests run every path the CPU has and compare the bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kernel {
    /// Baseline x86-64 (SSE2) or any other architecture.
    Portable,
    /// 256-bit AVX2 with FMA.
    Avx2,
    /// 512-bit AVX-512 (F, BW, VL) besides AVX2 and FMA.
    Avx512,
}

impl Kernel {
    /// Every kernel, slowest first.
    pub const ALL: [Kernel; 3] = [Kernel::Portable, Kernel::Avx2, Kernel::Avx512];

    /// The name used by [`Kernel::parse`] and `$BOLTZMANN_KERNEL`.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Portable => "portable",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512 => "avx512",
        }
    }

    /// The kernel called `name` (`portable`, `avx2`, `avx512`).
    pub fn parse(name: &str) -> Option<Kernel> {
        Kernel::ALL.into_iter().find(|k| k.name() == name.trim())
    }

    /// Whether this CPU can run the kernel.
    pub fn supported(self) -> bool {
        match self {
            Kernel::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => {
                Kernel::Avx2.supported()
                    && std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vl")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The fastest kernel this CPU runs.
    pub fn detected() -> Kernel {
        Kernel::ALL
            .into_iter()
            .rev()
            .find(|k| k.supported())
            .unwrap_or(Kernel::Portable)
    }

    /// The kernel in use: [`set_kernel`]'s choice, else `$BOLTZMANN_KERNEL` if it names a kernel
    /// this CPU runs, else [`Kernel::detected`].
    #[inline]
    pub fn active() -> Kernel {
        match ACTIVE.load(Ordering::Relaxed) {
            UNSET => {
                let chosen = std::env::var("BOLTZMANN_KERNEL")
                    .ok()
                    .and_then(|name| Kernel::parse(&name))
                    .filter(|k| k.supported())
                    .unwrap_or_else(Kernel::detected);
                // A racing `set_kernel` wins: only an unset choice is replaced.
                let _ = ACTIVE.compare_exchange(
                    UNSET,
                    chosen as u8,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                Kernel::from_code(ACTIVE.load(Ordering::Relaxed))
            }
            code => Kernel::from_code(code),
        }
    }

    fn from_code(code: u8) -> Kernel {
        Kernel::ALL[usize::from(code).min(Kernel::ALL.len() - 1)]
    }
}

impl std::fmt::Display for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

const UNSET: u8 = u8::MAX;
static ACTIVE: AtomicU8 = AtomicU8::new(UNSET);

/// Runs every kernel from now on with `kernel` (for all threads), if this CPU supports it;
/// returns the kernel used before. Since every kernel gives the same bits, this changes speed
/// only: it is for measuring one path against another.
pub fn set_kernel(kernel: Kernel) -> crate::Result<Kernel> {
    if !kernel.supported() {
        return Err(crate::Error::Invalid {
            what: "kernel",
            message: format!(
                "this CPU cannot run the {kernel} kernels (the fastest it runs is {})",
                Kernel::detected()
            ),
        });
    }
    let before = Kernel::active();
    ACTIVE.store(kernel as u8, Ordering::Relaxed);
    Ok(before)
}

/// The data caches of one core as CPUID reports them, in bytes (0 where unknown).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caches {
    /// The level-1 data cache.
    pub l1: usize,
    /// The level-2 cache.
    pub l2: usize,
    /// The last-level cache divided among the logical processors that share it.
    pub l3_share: usize,
    /// Whether the processor is AMD's (whose level-3 cache serves the cores of a complex at
    /// close to level-2 bandwidth, where a mesh of Intel server cores is several times slower).
    pub amd: bool,
}

/// This core's caches (read once).
pub fn caches() -> Caches {
    static CACHES: std::sync::OnceLock<Caches> = std::sync::OnceLock::new();
    *CACHES.get_or_init(read_caches)
}

/// CPUID leaf `leaf`, sub-leaf `sub`: (eax, ebx, ecx, edx). Callers read a leaf only when the
/// highest (extended) leaf, leaf 0 or 0x80000000, says it exists.
#[cfg(target_arch = "x86_64")]
// `__cpuid_count` is safe from Rust 1.94 on, unsafe before (the crate builds from 1.89).
#[allow(unused_unsafe)]
fn cpuid(leaf: u32, sub: u32) -> (u32, u32, u32, u32) {
    // SAFETY: CPUID exists on every x86-64 processor; a leaf beyond the highest returns data
    // of the highest, never faults.
    let r = unsafe { std::arch::x86_64::__cpuid_count(leaf, sub) };
    (r.eax, r.ebx, r.ecx, r.edx)
}

#[cfg(target_arch = "x86_64")]
fn read_caches() -> Caches {
    let (highest, vendor_b, vendor_c, vendor_d) = cpuid(0, 0);
    let amd = (vendor_b, vendor_d, vendor_c) == (0x6874_7541, 0x6974_6e65, 0x444d_4163);
    let highest_ext = cpuid(0x8000_0000, 0).0;
    // Leaf 4 (Intel) and 0x8000001D (AMD) describe each cache the same way.
    let leaf = if amd { 0x8000_001D } else { 4 };
    let mut caches = Caches {
        amd,
        ..Caches::default()
    };
    if (amd && highest_ext < leaf) || (!amd && highest < leaf) {
        return caches;
    }
    for index in 0..16 {
        let (eax, ebx, ecx, _) = cpuid(leaf, index);
        let kind = eax & 0x1F;
        if kind == 0 {
            break;
        }
        // Data (1) or unified (3) caches only.
        if kind == 2 {
            continue;
        }
        let level = eax >> 5 & 7;
        let sharing = (eax >> 14 & 0xFFF) as usize + 1;
        let ways = (ebx >> 22) as usize + 1;
        let partitions = (ebx >> 12 & 0x3FF) as usize + 1;
        let line = (ebx & 0xFFF) as usize + 1;
        let sets = ecx as usize + 1;
        let size = ways * partitions * line * sets;
        match level {
            1 => caches.l1 = size,
            2 => caches.l2 = size,
            3 => caches.l3_share = size / sharing,
            _ => {}
        }
    }
    caches
}

#[cfg(not(target_arch = "x86_64"))]
fn read_caches() -> Caches {
    Caches::default()
}

/// The most bytes a subset-sum table may have: products read it whole for every block of
/// chains, so it must stay in the caches close to the core. `$BOLTZMANN_TABLE_BYTES` sets it
/// (the path it selects changes the bits, so two machines give the same bits with the same
/// budget); otherwise the level-2 cache, plus on AMD the core's share of the level-3 cache.
/// Measured, chain-sweeps/s of 100 chains on one core with / without tables: Intel Xeon
/// (2 MiB level 2, mesh level 3) 784×500 93,000 / 117,000 and 784×250 159,000 / 211,000 (tables
/// of 6.3 and 3.1 MB); AMD EPYC Zen 3 (512 KiB level 2, 4 MiB of level 3 per core) 784×250
/// 134,000 / 99,000 and 784×1000 18,000 / 28,000 (tables of 3.1 and 12.5 MB).
pub fn table_budget() -> usize {
    static BUDGET: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *BUDGET.get_or_init(|| {
        std::env::var("BOLTZMANN_TABLE_BYTES")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| {
                let c = caches();
                // Unknown caches: the 2 MiB of a level-2 cache of today's server cores.
                let l2 = if c.l2 == 0 { 2 << 20 } else { c.l2 };
                l2 + if c.amd { c.l3_share } else { 0 }
            })
    })
}

/// The processor's name (CPUID brand string on x86-64, else the architecture).
pub fn cpu_name() -> String {
    #[cfg(target_arch = "x86_64")]
    if cpuid(0x8000_0000, 0).0 >= 0x8000_0004 {
        let mut bytes = Vec::with_capacity(48);
        for leaf in 0x8000_0002..=0x8000_0004u32 {
            let (a, b, c, d) = cpuid(leaf, 0);
            for word in [a, b, c, d] {
                bytes.extend_from_slice(&word.to_le_bytes());
            }
        }
        let name = String::from_utf8_lossy(&bytes);
        let name = name.trim_matches(|c: char| c == '\0' || c.is_whitespace());
        let signature = cpuid(1, 0).0;
        let family = (signature >> 8 & 0xF) + (signature >> 20 & 0xFF);
        let model = (signature >> 4 & 0xF) | (signature >> 12 & 0xF0);
        return format!("{name} (family {family}, model {model})");
    }
    std::env::consts::ARCH.to_string()
}

/// The SIMD features the kernels care about that this CPU has, space-separated.
pub fn cpu_features() -> String {
    let mut found: Vec<&str> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! check {
            ($($f:tt),*) => {
                $(if std::arch::is_x86_feature_detected!($f) { found.push($f); })*
            };
        }
        check!(
            "sse4.2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq"
        );
    }
    found.join(" ")
}

/// One line for benchmark and example output: the CPU, its features and the kernel in use.
pub fn describe() -> String {
    let c = caches();
    format!(
        "cpu: {}; features: {}; caches per core: L1d {} KiB, L2 {} KiB, L3 share {} KiB; kernel: {} (detected {}); subset-sum tables up to {} KiB",
        cpu_name(),
        cpu_features(),
        c.l1 >> 10,
        c.l2 >> 10,
        c.l3_share >> 10,
        Kernel::active(),
        Kernel::detected(),
        table_budget() >> 10
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_parse_their_names_and_the_detected_one_runs() {
        for k in Kernel::ALL {
            assert_eq!(Kernel::parse(k.name()), Some(k));
        }
        assert_eq!(Kernel::parse("avx3"), None);
        assert!(Kernel::detected().supported());
        assert!(Kernel::active().supported());
        assert!(describe().contains(Kernel::active().name()));
    }
}
