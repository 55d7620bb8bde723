// The single-process communicator, the helpers built on any communicator, and the gradient
// reducer (see dist.h). The MPI and NCCL communicators are in dist_mpi.cpp and dist_nccl.cpp.
#include "train/dist.h"

#include <chrono>
#include <cstdlib>
#include <cstring>

#include "core/autograd.h"
#include "core/ops.h"

namespace scion::train::dist {

namespace {

class DoneWork : public Work {
 public:
  void wait() override {}
};

class SingleCommunicator : public Communicator {
 public:
  std::string backend() const override { return "single"; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_size() const override { return 1; }
  int local_rank() const override { return 0; }
  WorkPtr allreduce_sum(Tensor, const std::string&) override {
    return std::make_shared<DoneWork>();
  }
  void broadcast(Tensor, int, const std::string&) override {}
  std::vector<std::string> allgather(const std::string& bytes, const std::string&) override {
    return {bytes};
  }
  [[noreturn]] void abort(int status) override { std::_Exit(status); }
};

}  // namespace

bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"})
    if (std::getenv(v)) return true;
  return false;
}

// Defined in dist_mpi.cpp when the build has MPI.
std::unique_ptr<Communicator> connect_mpi(double timeout_seconds);

#ifndef SCION_MPI
bool mpi_available() {
  return false;
}
std::unique_ptr<Communicator> connect_mpi(double) {
  throw Error("this build of scion has no MPI");
}
#endif
#ifndef SCION_NCCL
std::unique_ptr<Communicator> connect_nccl(Communicator&, int, double) {
  return nullptr;
}
#endif

std::unique_ptr<Communicator> connect(double timeout_seconds) {
  if (launched_by_mpi()) {
    if (!mpi_available())
      throw InputError(
          "this process was started by an MPI launcher, but this build of scion has no MPI "
          "(install libopenmpi-dev, e.g. with `make deps`, and rebuild)");
    return connect_mpi(timeout_seconds);
  }
  return std::make_unique<SingleCommunicator>();
}

void broadcast_string(Communicator& comm, std::string& s, int root, const std::string& what) {
  if (comm.size() == 1) return;
  Tensor n = empty({1}, DType::i64);
  n.data<int64_t>()[0] = int64_t(s.size());
  comm.broadcast(n, root, what + " (length)");
  s.resize(size_t(n.data<int64_t>()[0]));
  if (s.empty()) return;
  Tensor bytes = empty({int64_t(s.size())}, DType::u8);
  std::memcpy(bytes.raw_data(), s.data(), s.size());
  comm.broadcast(bytes, root, what);
  std::memcpy(s.data(), bytes.raw_data(), s.size());
}

void allreduce_sum(Communicator& comm, std::vector<double>& values, const std::string& what) {
  if (comm.size() == 1 || values.empty()) return;
  Tensor t = empty({int64_t(values.size())}, DType::f64);
  std::memcpy(t.data<double>(), values.data(), values.size() * sizeof(double));
  comm.allreduce_sum(t, what)->wait();
  std::memcpy(values.data(), t.data<double>(), values.size() * sizeof(double));
}

void agree(Communicator& comm, const std::string& what, const std::function<void()>& step) {
  std::exception_ptr error;
  std::string status = "ok";
  try {
    step();
  } catch (const InputError& e) {
    error = std::current_exception();
    status = std::string("2") + e.what();
  } catch (const std::exception& e) {
    error = std::current_exception();
    status = std::string("1") + e.what();
  }
  if (comm.size() == 1) {
    if (error) std::rethrow_exception(error);
    return;
  }
  std::vector<std::string> all = comm.allgather(status, what);
  for (int r = 0; r < int(all.size()); ++r) {
    if (all[size_t(r)] == "ok") continue;
    // The first rank with a given message reports it; the others (the same error on several
    // ranks, or ranks that did not fail) stop quietly with its status.
    if (error && all[size_t(r)] == status && r == comm.rank()) std::rethrow_exception(error);
    if (error && all[size_t(r)] != status) continue;  // look for the first rank with my message
    throw PeerFailed(
        r, all[size_t(r)][0] == '2' ? 2 : 1,
        "rank " + std::to_string(r) + " failed (" + what + "): " + all[size_t(r)].substr(1));
  }
  if (error) std::rethrow_exception(error);  // unreachable: a failing rank finds its own entry
}

uint64_t checksum(const std::vector<std::pair<std::string, Tensor>>& tensors) {
  // FNV-1a over 8-byte words, then a final mix: fast, and any changed bit changes the hash.
  uint64_t h = 0xcbf29ce484222325ull;
  for (const auto& [name, t0] : tensors) {
    Tensor t = t0.cpu().contiguous();
    const auto* bytes = static_cast<const unsigned char*>(t.raw_data());
    size_t n = size_t(t.numel()) * dtype_size(t.dtype()), i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      std::memcpy(&w, bytes + i, 8);
      h = (h ^ w) * 0x100000001b3ull;
    }
    for (; i < n; ++i) h = (h ^ bytes[i]) * 0x100000001b3ull;
    h = (h ^ n) * 0x100000001b3ull;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  return h ^ (h >> 33);
}

void check_identical(Communicator& comm, const std::vector<std::pair<std::string, Tensor>>& tensors,
                     const std::string& what) {
  if (comm.size() == 1) return;
  std::vector<std::string> all = comm.allgather(std::to_string(checksum(tensors)), what);
  int differs = -1;
  for (int r = 1; r < int(all.size()) && differs < 0; ++r)
    if (all[size_t(r)] != all[0]) differs = r;
  if (differs < 0) return;
  // Name the first tensor that differs: every rank sends its per-tensor hashes.
  std::string mine;
  for (const auto& nt : tensors) mine += std::to_string(checksum({nt})) + "\n";
  std::vector<std::string> lists = comm.allgather(mine, what + " (per tensor)");
  std::string name = "(unknown)";
  size_t a = 0, b = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    size_t ea = lists[0].find('\n', a), eb = lists[size_t(differs)].find('\n', b);
    if (lists[0].compare(a, ea - a, lists[size_t(differs)], b, eb - b) != 0) {
      name = tensors[i].first;
      break;
    }
    a = ea + 1;
    b = eb + 1;
  }
  const std::string msg = what + ": the state of rank " + std::to_string(differs) +
                          " differs from rank 0's (first in " + name +
                          "); data-parallel ranks must hold identical weights and optimizer state";
  if (comm.is_root()) throw Error(msg);
  throw PeerFailed(0, 1, msg);  // rank 0 reports it
}

// ---- gradient reducer ---------------------------------------------------------------------------

GradReducer::GradReducer(Communicator& comm,
                         const std::vector<std::pair<std::string, Tensor>>& params,
                         double bucket_mb, bool bf16_compress)
    : comm_(comm), params_(params), bucket_of_(params.size()), bf16_(bf16_compress) {
  const int64_t cap = std::max<int64_t>(1, int64_t(bucket_mb * 1024 * 1024 / 4));
  for (size_t k = params_.size(); k-- > 0;) {  // backward produces the last parameters first
    Tensor& p = params_[k].second;
    SCION_ASSERT(p.dtype() == DType::f32, "GradReducer: parameter ", params_[k].first, " is ",
                 dtype_name(p.dtype()), ", expected f32 master weights");
    if (buckets_.empty() || buckets_.back().numel >= cap) buckets_.emplace_back();
    Bucket& b = buckets_.back();
    bucket_of_[k] = buckets_.size() - 1;
    b.params.push_back(k);
    b.offsets.push_back(b.numel);
    b.numel += p.numel();
  }
  for (Bucket& b : buckets_) {
    b.name = "gradient bucket " + std::to_string(&b - buckets_.data());
    b.flat =
        empty({b.numel}, bf16_ ? DType::bf16 : DType::f32, params_[b.params[0]].second.device());
  }
  for (size_t k = 0; k < params_.size(); ++k)
    params_[k].second.register_post_accumulate_grad_hook(
        [this, k](const Tensor&) { on_grad_ready(k); });
}

GradReducer::~GradReducer() {
  for (auto& [name, p] : params_) p.register_post_accumulate_grad_hook(nullptr);
}

void GradReducer::prepare(bool sync) {
  sync_ = sync;
  next_launch_ = 0;
  for (Bucket& b : buckets_) {
    b.pending = b.params.size();
    b.work.reset();
  }
}

void GradReducer::on_grad_ready(size_t k) {
  if (!sync_) return;
  Bucket& b = buckets_[bucket_of_[k]];
  if (b.pending > 0) --b.pending;
  launch_ready();
}

// Buckets start in index order on every rank (collectives are matched by position).
void GradReducer::launch_ready() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0)
    launch(buckets_[next_launch_++]);
}

void GradReducer::launch(Bucket& b) {
  NoGradGuard ng;
  for (size_t i = 0; i < b.params.size(); ++i) {
    const Tensor& p = params_[b.params[i]].second;
    Tensor slot = b.flat.narrow(0, b.offsets[i], p.numel());
    Tensor g = p.grad();
    if (g.defined())
      slot.copy_(g.reshape({p.numel()}));
    else
      slot.fill_(0.0);
  }
  b.work = comm_.allreduce_sum(b.flat, b.name);
}

void GradReducer::finish() {
  if (!sync_) return;
  for (Bucket& b : buckets_) b.pending = 0;  // gradients that never arrived count as zero
  launch_ready();
  NoGradGuard ng;
  const double scale = 1.0 / double(comm_.size());
  for (Bucket& b : buckets_) {
    const auto t0 = std::chrono::steady_clock::now();
    b.work->wait();
    wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (size_t i = 0; i < b.params.size(); ++i) {
      Tensor& p = params_[b.params[i]].second;
      Tensor g = p.grad();
      if (!g.defined()) continue;  // no gradient on any rank (the graphs are the same)
      g.copy_(b.flat.narrow(0, b.offsets[i], p.numel()).reshape(p.shape()));
      g.mul_(scale);
    }
    b.work.reset();
  }
  sync_ = false;
}

}  // namespace scion::train::dist
