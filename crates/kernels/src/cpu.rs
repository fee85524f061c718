//! The one switch for every SIMD kernel of Temper: which instruction set this CPU has, and
//! `TEMPER_CPU` to force a lower one (to test the portable code, or compare levels).

use std::sync::OnceLock;

/// The instruction set the kernels use, from the least to the most capable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CpuLevel {
    Scalar,
    /// AVX2 with FMA and F16C (every AVX2 CPU has the latter two).
    Avx2,
    /// AVX2 plus AVX-VNNI: byte dot products in one instruction.
    AvxVnni,
    /// AVX2 plus AVX-512 F/BW/VL/VNNI.
    Avx512,
}

impl CpuLevel {
    pub const ALL: [CpuLevel; 4] = [CpuLevel::Scalar, CpuLevel::Avx2, CpuLevel::AvxVnni, CpuLevel::Avx512];

    pub fn name(self) -> &'static str {
        match self {
            CpuLevel::Scalar => "scalar",
            CpuLevel::Avx2 => "avx2",
            CpuLevel::AvxVnni => "avxvnni",
            CpuLevel::Avx512 => "avx512",
        }
    }

    fn from_name(name: &str) -> Option<CpuLevel> {
        CpuLevel::ALL.into_iter().find(|l| l.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Whether this CPU can run the level's kernels. (A CPU with AVX-512 VNNI may lack AVX-VNNI,
    /// so this is not the same as being at most [`CpuLevel::detected`].)
    pub fn is_available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c");
            match self {
                CpuLevel::Scalar => true,
                CpuLevel::Avx2 => avx2,
                CpuLevel::AvxVnni => avx2 && is_x86_feature_detected!("avxvnni"),
                CpuLevel::Avx512 => {
                    avx2 && is_x86_feature_detected!("avx512f")
                        && is_x86_feature_detected!("avx512bw")
                        && is_x86_feature_detected!("avx512vl")
                        && is_x86_feature_detected!("avx512vnni")
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == CpuLevel::Scalar
        }
    }

    /// The best level this CPU supports.
    pub fn detected() -> CpuLevel {
        CpuLevel::ALL.into_iter().rev().find(|l| l.is_available()).unwrap_or(CpuLevel::Scalar)
    }

    /// Every level this CPU can run, for tests that compare them.
    pub fn available() -> impl Iterator<Item = CpuLevel> {
        CpuLevel::ALL.into_iter().filter(|l| l.is_available())
    }
}

impl std::fmt::Display for CpuLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The level the kernels run at: the detected one, or `TEMPER_CPU=scalar|avx2|avxvnni|avx512`
/// if that names a level this CPU can run (anything else is ignored). Read once per process.
pub fn cpu_level() -> CpuLevel {
    static LEVEL: OnceLock<CpuLevel> = OnceLock::new();
    *LEVEL.get_or_init(|| match std::env::var("TEMPER_CPU").ok().as_deref().and_then(CpuLevel::from_name) {
        Some(level) if level.is_available() => level,
        _ => CpuLevel::detected(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_level_names_round_trip() {
        for level in CpuLevel::ALL {
            assert_eq!(CpuLevel::from_name(&level.to_string()), Some(level));
        }
        assert!(cpu_level().is_available());
        assert_eq!(CpuLevel::available().last(), Some(CpuLevel::detected()));
    }
}
