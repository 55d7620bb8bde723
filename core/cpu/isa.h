// What this CPU can run, and which kernel path each part of scion takes on it.
// One build runs on every x86-64 CPU: the hot kernels are compiled once per ISA level (plain,
// AVX2+FMA, AVX-512; see isa_begin.h and dispatch.cpp) and the level is chosen once at run time
// from the CPU's features, capped by the environment:
//   SCION_MAX_ISA=plain|avx2|avx512|avx512_bf16|amx   caps scion's own kernels, and oneDNN's too
//                                                      unless ONEDNN_MAX_CPU_ISA is set;
//   ONEDNN_MAX_CPU_ISA=SSE41|AVX2|AVX512_CORE|...     caps oneDNN alone (oneDNN reads it itself).
// Levels are ordered: each implies the ones below it. avx512 means F+BW+VL+DQ (Skylake-SP and
// later); avx512_bf16 adds vdpbf16ps (Cooper Lake, Zen 4); amx adds AMX-TILE+BF16 (Sapphire
// Rapids). scion's own kernels top out at avx512, but for the bf16 attention engine (vdpbf16ps at
// avx512_bf16, AMX tiles at amx); oneDNN runs its GEMMs and convolutions on AMX.
// On arm64 the kernels have one level, plain (NEON through the compiler's vectorizer), and
// cpu_features() lists the HWCAP features (neon, fp16, dotprod, i8mm, bf16, sve, sve2); oneDNN
// picks its own kernels there (its ISA cap is x86-64 only).
#pragma once

#include <string>
#include <vector>

namespace scion::cpu {

enum class Isa { plain = 0, avx2 = 1, avx512 = 2, avx512_bf16 = 3, amx = 4 };

const char* isa_name(Isa isa);
// The level named by `name` (as above); throws InputError naming `what` for an unknown name.
Isa parse_isa(const std::string& name, const std::string& what);

// The CPU's own level (its features and the OS's support for their registers).
Isa cpu_isa();
// The cap from SCION_MAX_ISA (amx when unset), read once.
Isa isa_cap();
// min(cpu_isa(), isa_cap()): the level scion's kernels run at.
Isa active_isa();
// Whether SCION_MAX_ISA changes any kernel on this CPU, scion's or oneDNN's (the cap's oneDNN
// level is below what oneDNN would pick here). The test suite's capped reruns skip themselves
// where it does not: they would run the uncapped suite's kernels again (an AVX2 cap on an
// AVX2-only CPU).
bool isa_cap_changes_kernels();
// The rule of isa_cap_changes_kernels on given facts: the CPU's level, the cap, and the features
// oneDNN uses beyond the cap's level (AVX for plain's SSE4.1; AVX-512F or AVX-VNNI for AVX2).
// Caps above avx2 count as changing the kernels (oneDNN has levels between scion's there).
bool isa_cap_changes_kernels(Isa cpu, Isa cap, bool avx, bool avx512f, bool avx_vnni);

// False for a SCION_NATIVE=ON build (-march=native: everything compiled for the build machine).
bool portable_build();
// "2.6.3"
std::string onednn_version();

// The CPU's brand string and the feature flags that matter here (avx2, fma, f16c, avx512f, ...).
// On x86-64 the brand string is followed by the core and the CPUID family and model, since VMs
// often show only "AMD EPYC" or "Intel Xeon": "AMD EPYC (Zen 3, family 25 model 1)".
std::string cpu_model();
// The core design of an x86-64 CPU from its vendor string and CPUID display family and model
// ("Zen 3", "Emerald Rapids", ...); "" for one not in the table.
std::string x86_core_name(const std::string& vendor, unsigned family, unsigned model);
std::vector<std::string> cpu_features();

// Applies SCION_MAX_ISA to oneDNN (unless ONEDNN_MAX_CPU_ISA is set) before oneDNN's first use;
// idempotent. Everything that calls oneDNN goes through engine() or calls this first.
void configure_onednn();
// oneDNN's effective ISA after its cap ("avx2", "avx512_core_bf16", ...).
std::string onednn_isa_name();
// Whether oneDNN has bf16 primitives here (avx512_core and up in oneDNN 2.6); below that scion
// runs bf16 ops through f32 kernels on widened copies.
bool onednn_has_bf16();
// Whether bf16 dot products are native (avx512_bf16 or amx, for scion and oneDNN alike).
bool native_bf16();
// Whether this process may use AMX tiles: Linux (5.16 and later) grants the tile state on request
// (arch_prctl ARCH_REQ_XCOMP_PERM), asked here once; without it tile instructions fault. oneDNN
// asks for itself. False without AMX and off x86-64.
bool amx_tiles_permitted();

// The CPU's vendor string (CPUID leaf 0: "GenuineIntel", "AuthenticAMD", ...; "" off x86-64).
std::string cpu_vendor();
// Whether native bf16 dot products outpace this CPU's f32 FMAs, so that `precision: auto` picks
// bf16: with oneDNN's AMX kernels, or on AMD cores (Zen 4 and later; Hygon's are AMD's), which run
// vdpbf16ps at the FMAs' rate, so a bf16 GEMM does twice the f32 work per cycle (AMD EPYC Zen 4:
// 419 against 216 GFLOP/s). Intel cores issue vdpbf16ps on one port where they issue FMAs on two,
// so without AMX (Cooper Lake; Sapphire and Emerald Rapids where AMX is off or hidden, as in many
// VMs) bf16 does no more work per cycle and adds casts: oneDNN's bf16 GEMM ran at 167 against
// 300 GFLOP/s on an Emerald Rapids VM, and ViT-T trained 38% slower in bf16 than in f32.
bool bf16_outpaces_f32();
// The rule of bf16_outpaces_f32 on given facts (tested on every machine).
bool bf16_outpaces_f32(bool native_bf16, bool onednn_amx, const std::string& vendor);

}  // namespace scion::cpu
