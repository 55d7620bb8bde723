// CPU feature detection (on x86-64 cpuid through GCC's __builtin_cpu_supports, which also checks
// that the OS saves the wide registers; on arm64 the kernel's HWCAP bits and /proc/cpuinfo), the
// SCION_MAX_ISA cap, and oneDNN's ISA. Compiled for the baseline ISA like everything outside the
// per-ISA kernels.
#include "core/cpu/isa.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <dnnl.hpp>
#include <mutex>

#include "core/error.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#elif defined(__aarch64__)
#include <asm/hwcap.h>
#include <sys/auxv.h>

#include <fstream>
#include <sstream>
#endif

namespace scion::cpu {

namespace {

constexpr const char* kNames[] = {"plain", "avx2", "avx512", "avx512_bf16", "amx"};

#if defined(__x86_64__)
struct Cpuid {
  unsigned a = 0, b = 0, c = 0, d = 0;
};
Cpuid cpuid(unsigned leaf, unsigned sub = 0) {
  Cpuid r;
  if (!__get_cpuid_count(leaf, sub, &r.a, &r.b, &r.c, &r.d)) return Cpuid{};
  return r;
}
bool has_f16c() {
  return cpuid(1).c >> 29 & 1;
}
// AMX-TILE and AMX-BF16 (leaf 7 EDX bits 24, 22) with the OS saving tile state (XCR0 bits 17-18).
bool has_amx() {
  Cpuid l7 = cpuid(7);
  if (!(l7.d >> 24 & 1) || !(l7.d >> 22 & 1)) return false;
  unsigned lo, hi;
  __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (lo & (3u << 17)) == (3u << 17);
}
#elif defined(__aarch64__)
// The first core's "CPU implementer" and "CPU part" (MIDR fields) from /proc/cpuinfo, named for
// the cores scion's users run on; 0 when absent (as under qemu-user, which shows the host's file).
std::string arm_core_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  unsigned implementer = 0, part = 0;
  while (std::getline(in, line)) {
    auto value = [&] {
      return unsigned(std::strtoul(line.c_str() + line.find(':') + 1, nullptr, 0));
    };
    if (line.rfind("CPU implementer", 0) == 0 && !implementer) implementer = value();
    if (line.rfind("CPU part", 0) == 0 && !part) part = value();
  }
  if (!implementer) return "";
  struct Core {
    unsigned implementer, part;
    const char* name;
  };
  static const Core cores[] = {{0x41, 0xd03, "Arm Cortex-A53"},
                               {0x41, 0xd07, "Arm Cortex-A57"},
                               {0x41, 0xd08, "Arm Cortex-A72"},
                               {0x41, 0xd0b, "Arm Cortex-A76"},
                               {0x41, 0xd0c, "Arm Neoverse-N1"},
                               {0x41, 0xd40, "Arm Neoverse-V1"},
                               {0x41, 0xd49, "Arm Neoverse-N2"},
                               {0x41, 0xd4f, "Arm Neoverse-V2"},
                               {0xc0, 0xac3, "AmpereOne"},
                               {0x46, 0x001, "Fujitsu A64FX"},
                               {0x61, 0, "Apple"}};  // Apple silicon in a VM: any part
  for (const Core& c : cores)
    if (c.implementer == implementer && (c.part == part || c.part == 0)) return c.name;
  std::ostringstream s;
  s << "arm64 CPU (implementer 0x" << std::hex << implementer << ", part 0x" << part << ")";
  return s.str();
}
#endif

Isa detect() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
  bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  bool bf16 = avx512 && __builtin_cpu_supports("avx512bf16");
  if (bf16 && has_amx()) return Isa::amx;
  if (bf16) return Isa::avx512_bf16;
  if (avx512) return Isa::avx512;
  if (avx2) return Isa::avx2;
#endif
  return Isa::plain;
}

#if defined(__x86_64__)
dnnl::cpu_isa onednn_cap_for(Isa isa) {
  switch (isa) {
    case Isa::plain:
      return dnnl::cpu_isa::sse41;  // oneDNN's lowest level; it has no plain-C path for GEMMs
    case Isa::avx2:
      return dnnl::cpu_isa::avx2;
    case Isa::avx512:
      return dnnl::cpu_isa::avx512_core;
    case Isa::avx512_bf16:
      return dnnl::cpu_isa::avx512_core_bf16;
    case Isa::amx:
      break;
  }
  return dnnl::cpu_isa::all;
}
#endif

// oneDNN's ISAs are bit sets: a includes b when every bit of b is set in a.
bool includes(dnnl::cpu_isa a, dnnl::cpu_isa b) {
  return (unsigned(a) & unsigned(b)) == unsigned(b);
}

}  // namespace

const char* isa_name(Isa isa) {
  return kNames[int(isa)];
}

Isa parse_isa(const std::string& name, const std::string& what) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return char(std::tolower(c)); });
  for (int i = 0; i <= int(Isa::amx); ++i)
    if (lower == kNames[i]) return Isa(i);
  throw InputError(detail::str_cat(what, ": unknown ISA '", name,
                                   "', expected one of plain, avx2, avx512, avx512_bf16, amx"));
}

Isa cpu_isa() {
  static const Isa isa = detect();
  return isa;
}

Isa isa_cap() {
  static const Isa cap = [] {
    const char* env = std::getenv("SCION_MAX_ISA");
    return env && *env ? parse_isa(env, "SCION_MAX_ISA") : Isa::amx;
  }();
  return cap;
}

Isa active_isa() {
  return std::min(cpu_isa(), isa_cap());
}

bool isa_cap_changes_kernels(Isa cpu, Isa cap, bool avx, bool avx512f, bool avx_vnni) {
  if (cap == Isa::amx) return false;  // no cap
  if (cpu > cap) return true;
  switch (cap) {
    case Isa::plain:
      return avx;  // oneDNN's cap for plain is SSE4.1
    case Isa::avx2:
      return avx512f || avx_vnni;  // oneDNN's avx512_* and avx2_vnni levels
    default:
      return true;
  }
}

bool isa_cap_changes_kernels() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  return isa_cap_changes_kernels(cpu_isa(), isa_cap(), __builtin_cpu_supports("avx"),
                                 __builtin_cpu_supports("avx512f"),
                                 __builtin_cpu_supports("avxvnni"));
#else
  return false;  // one kernel level, and oneDNN's cap is x86-64 only
#endif
}

bool portable_build() {
#ifdef SCION_NATIVE_BUILD
  return false;
#else
  return true;
#endif
}

std::string onednn_version() {
  const dnnl_version_t* v = dnnl_version();
  return std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
}

std::string cpu_model() {
#if defined(__aarch64__)
  std::string name = arm_core_name();
  return name.empty() ? "unknown arm64 CPU" : name;
#endif
#if defined(__x86_64__)
  std::string s;
  if (cpuid(0x80000000).a >= 0x80000004) {
    char brand[49] = {};
    for (unsigned i = 0; i < 3; ++i) {
      Cpuid r = cpuid(0x80000002 + i);
      std::memcpy(brand + 16 * i, &r, 16);
    }
    s = brand;
    s.erase(0, s.find_first_not_of(' '));
    s.erase(s.find_last_not_of(' ') + 1);
  }
  // Display family and model (the extended fields count for base family 6 and 15).
  const unsigned a = cpuid(1).a, base = a >> 8 & 0xf;
  const unsigned family = base == 0xf ? base + (a >> 20 & 0xff) : base;
  const unsigned model = (a >> 4 & 0xf) | (base == 6 || base == 0xf ? (a >> 16 & 0xf) << 4 : 0);
  const std::string core = x86_core_name(cpu_vendor(), family, model);
  return (s.empty() ? "x86-64 CPU" : s) + " (" + (core.empty() ? "" : core + ", ") + "family " +
         std::to_string(family) + " model " + std::to_string(model) + ")";
#endif
  return "unknown CPU";
}

std::string x86_core_name(const std::string& vendor, unsigned family, unsigned model) {
  struct Core {
    unsigned family, first, last;  // models first..last
    const char* name;
  };
  if (vendor == "AuthenticAMD" || vendor == "HygonGenuine") {
    static const Core amd[] = {{0x17, 0x00, 0x2f, "Zen/Zen+"}, {0x17, 0x30, 0xff, "Zen 2"},
                               {0x19, 0x00, 0x0f, "Zen 3"},    {0x19, 0x10, 0x1f, "Zen 4"},
                               {0x19, 0x20, 0x5f, "Zen 3"},    {0x19, 0x60, 0x7f, "Zen 4"},
                               {0x19, 0xa0, 0xaf, "Zen 4"},    {0x1a, 0x00, 0xff, "Zen 5"}};
    for (const Core& c : amd)
      if (c.family == family && model >= c.first && model <= c.last) return c.name;
  }
  if (vendor == "GenuineIntel" && family == 6) {
    static const Core intel[] = {
        {6, 0x3c, 0x3c, "Haswell"},          {6, 0x3f, 0x3f, "Haswell"},
        {6, 0x45, 0x46, "Haswell"},          {6, 0x3d, 0x3d, "Broadwell"},
        {6, 0x47, 0x47, "Broadwell"},        {6, 0x4f, 0x4f, "Broadwell"},
        {6, 0x56, 0x56, "Broadwell"},        {6, 0x4e, 0x4e, "Skylake"},
        {6, 0x5e, 0x5e, "Skylake"},          {6, 0x55, 0x55, "Skylake-SP/Cascade Lake"},
        {6, 0x8e, 0x8e, "Kaby/Coffee Lake"}, {6, 0x9e, 0x9e, "Kaby/Coffee Lake"},
        {6, 0x6a, 0x6a, "Ice Lake-SP"},      {6, 0x6c, 0x6c, "Ice Lake-SP"},
        {6, 0x7e, 0x7e, "Ice Lake"},         {6, 0x8c, 0x8d, "Tiger Lake"},
        {6, 0x97, 0x97, "Alder Lake"},       {6, 0x9a, 0x9a, "Alder Lake"},
        {6, 0xb7, 0xb7, "Raptor Lake"},      {6, 0xba, 0xba, "Raptor Lake"},
        {6, 0xbf, 0xbf, "Raptor Lake"},      {6, 0xaa, 0xaa, "Meteor Lake"},
        {6, 0x8f, 0x8f, "Sapphire Rapids"},  {6, 0xcf, 0xcf, "Emerald Rapids"},
        {6, 0xad, 0xad, "Granite Rapids"}};
    for (const Core& c : intel)
      if (model >= c.first && model <= c.last) return c.name;
  }
  return "";
}

std::vector<std::string> cpu_features() {
  std::vector<std::string> out;
#if defined(__x86_64__)
  __builtin_cpu_init();
  auto add = [&](const char* name, bool has) {
    if (has) out.push_back(name);
  };
  add("sse4.2", __builtin_cpu_supports("sse4.2"));
  add("avx", __builtin_cpu_supports("avx"));
  add("avx2", __builtin_cpu_supports("avx2"));
  add("fma", __builtin_cpu_supports("fma"));
  add("f16c", has_f16c());
  add("avx512f", __builtin_cpu_supports("avx512f"));
  add("avx512bw", __builtin_cpu_supports("avx512bw"));
  add("avx512vl", __builtin_cpu_supports("avx512vl"));
  add("avx512dq", __builtin_cpu_supports("avx512dq"));
  add("avx512vnni", __builtin_cpu_supports("avx512vnni"));
  add("avx512bf16", __builtin_cpu_supports("avx512bf16"));
  add("amx-tile+bf16", has_amx());
#elif defined(__aarch64__)
  // scion's own kernels take the plain path here (NEON by the compiler's vectorizer: every arm64
  // CPU has it); oneDNN picks its own kernels from these features.
  unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
  auto add = [&](const char* name, bool has) {
    if (has) out.push_back(name);
  };
  add("neon", hw & HWCAP_ASIMD);
  add("fp16", hw & HWCAP_ASIMDHP);
  add("dotprod", hw & HWCAP_ASIMDDP);
  add("i8mm", hw2 & HWCAP2_I8MM);
  add("bf16", hw2 & HWCAP2_BF16);
  add("sve", hw & HWCAP_SVE);
  add("sve2", hw2 & HWCAP2_SVE2);
#endif
  return out;
}

void configure_onednn() {
#if defined(__x86_64__)
  static std::once_flag once;
  std::call_once(once, [] {
    const char* own = std::getenv("ONEDNN_MAX_CPU_ISA");
    if (own && *own) return;  // oneDNN applies it itself
    if (isa_cap() == Isa::amx) return;
    dnnl::set_max_cpu_isa(onednn_cap_for(isa_cap()));
  });
#endif
  // Other architectures: oneDNN's ISA cap (dnnl_set_max_cpu_isa) is x86-64 only; scion's own
  // kernels have one level there.
}

// The cap is applied before main too, since some oneDNN entry points (dnnl_sgemm) need no engine.
// A bad SCION_MAX_ISA is reported by the first isa_cap() call in main, not here.
const bool kOnednnConfiguredAtStart = [] {
  try {
    configure_onednn();
  } catch (const Error&) {
  }
  return true;
}();

std::string onednn_isa_name() {
#if !defined(__x86_64__)
  return "aarch64, its own choice (ISA caps are x86-64 only)";
#endif
  configure_onednn();
  using I = dnnl::cpu_isa;
  const std::pair<I, const char*> names[] = {{I::avx512_core_amx, "avx512_core_amx"},
                                             {I::avx512_core_bf16, "avx512_core_bf16"},
                                             {I::avx512_core_vnni, "avx512_core_vnni"},
                                             {I::avx512_core, "avx512_core"},
                                             {I::avx2_vnni, "avx2_vnni"},
                                             {I::avx2, "avx2"},
                                             {I::avx, "avx"},
                                             {I::sse41, "sse41"}};
  I isa = dnnl::get_effective_cpu_isa();
  for (const auto& [level, name] : names)
    if (includes(isa, level)) return name;
  return "none (reference kernels only)";
}

// Both are fixed once oneDNN's cap is applied; the backend asks on every bf16 op.
bool onednn_has_bf16() {
  static const bool has = [] {
#if defined(__x86_64__)
    configure_onednn();
    return includes(dnnl::get_effective_cpu_isa(), dnnl::cpu_isa::avx512_core);
#else
    return false;  // bf16 through f32 kernels: the same numerics, with no reliance on the build
#endif
  }();
  return has;
}

std::string cpu_vendor() {
#if defined(__x86_64__)
  const Cpuid l0 = cpuid(0);
  char name[13] = {};
  std::memcpy(name, &l0.b, 4);
  std::memcpy(name + 4, &l0.d, 4);
  std::memcpy(name + 8, &l0.c, 4);
  return name;
#else
  return "";
#endif
}

bool bf16_outpaces_f32(bool native_bf16, bool onednn_amx, const std::string& vendor) {
  if (!native_bf16) return false;
  return onednn_amx || vendor == "AuthenticAMD" || vendor == "HygonGenuine";
}

bool bf16_outpaces_f32() {
  static const bool faster = [] {
#if defined(__x86_64__)
    configure_onednn();
    const bool amx = includes(dnnl::get_effective_cpu_isa(), dnnl::cpu_isa::avx512_core_amx);
    return bf16_outpaces_f32(native_bf16(), amx, cpu_vendor());
#else
    return false;
#endif
  }();
  return faster;
}

bool amx_tiles_permitted() {
#if defined(__x86_64__)
  static const bool granted = [] {
    constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;  // <asm/prctl.h>, Linux 5.16
    return has_amx() && syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return granted;
#else
  return false;
#endif
}

bool native_bf16() {
  static const bool native = [] {
#if !defined(__x86_64__)
    return false;
#endif
    configure_onednn();
    return active_isa() >= Isa::avx512_bf16 &&
           includes(dnnl::get_effective_cpu_isa(), dnnl::cpu_isa::avx512_core_bf16);
  }();
  return native;
}

}  // namespace scion::cpu
