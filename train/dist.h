// Data-parallel training across processes (DESIGN.md "Multi-process training"): a Communicator
// (collectives among the ranks of one job) with three implementations behind one interface:
//   single  one process, every collective a no-op (plain `train`);
//   mpi     CPU tensors over MPI (Open MPI), chosen when the process was launched by mpirun;
//   nccl    CUDA tensors over NCCL (built with the CUDA backend; ranks meet through MPI).
//
// Every collective is matched by position: all ranks must issue the same collectives in the same
// order. Collectives run on one communication thread per process, in the order they were issued,
// so an asynchronous allreduce overlaps with the caller's work (the gradient buckets of backward).
// Each collective has a deadline (dist.timeout_seconds): a rank that died or stopped responding
// ends the job with a TimeoutError naming the collective instead of a hang.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"

namespace scion::train::dist {

// A collective that did not complete before its deadline.
class TimeoutError : public Error {
 public:
  using Error::Error;
};

// Another rank failed (its own message is printed by that rank); this one stops with the same
// exit status without repeating it.
class PeerFailed : public Error {
 public:
  PeerFailed(int rank, int status, const std::string& what)
      : Error(what), failed_rank(rank), exit_status(status) {}
  int failed_rank, exit_status;
};

// An asynchronous collective in flight; wait() returns when it completed (or throws).
class Work {
 public:
  virtual ~Work() = default;
  virtual void wait() = 0;
};
using WorkPtr = std::shared_ptr<Work>;

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual std::string backend() const = 0;  // "single", "mpi", "nccl"
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual int local_size() const = 0;  // ranks on this machine (threads are divided among them)
  virtual int local_rank() const = 0;  // this rank's index among them (its GPU, on GPUs)

  // Sums a contiguous f32, f64 or bf16 tensor over all ranks, in place, asynchronously: the tensor
  // must stay untouched until wait(). bf16 sums are rounded to bf16 after each addition.
  // `what` names the collective in a timeout message.
  virtual WorkPtr allreduce_sum(Tensor t, const std::string& what) = 0;
  // Overwrites a contiguous tensor on every rank with root's.
  virtual void broadcast(Tensor t, int root, const std::string& what) = 0;
  // Every rank's bytes, in rank order.
  virtual std::vector<std::string> allgather(const std::string& bytes, const std::string& what) = 0;
  // Ends every process of the job at once (MPI_Abort) with `status`.
  [[noreturn]] virtual void abort(int status) = 0;

  bool is_root() const { return rank() == 0; }
};

// The job's communicator: MPI when launched by mpirun (OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK
// in the environment), else single. `timeout_seconds` bounds every collective. An MPI
// communicator initializes MPI and finalizes it when destroyed; there is one per process.
std::unique_ptr<Communicator> connect(double timeout_seconds);
// Whether the environment says this process was started by an MPI launcher.
bool launched_by_mpi();
// Whether this build has MPI (the Makefile installs Open MPI; a build without it runs single).
bool mpi_available();
// An NCCL communicator over the same ranks as `bootstrap` (an MPI communicator that exchanges
// NCCL's unique id; or the single-process one, a one-rank NCCL communicator), for CUDA tensors:
// collectives on CUDA tensors go through NCCL, host tensors and byte exchanges through
// `bootstrap`. nullptr in a build without NCCL. Data-parallel training on GPUs uses it.
std::unique_ptr<Communicator> connect_nccl(Communicator& bootstrap, int cuda_device,
                                           double timeout_seconds);

// Convenience collectives built on the above.
void broadcast_string(Communicator& comm, std::string& s, int root, const std::string& what);
void allreduce_sum(Communicator& comm, std::vector<double>& values, const std::string& what);

// Runs `step` on every rank and agrees on its outcome: when any rank throws, every rank throws,
// the first failing rank its own exception (InputError stays InputError), the others PeerFailed,
// so no rank waits in a collective for a rank that already gave up.
void agree(Communicator& comm, const std::string& what, const std::function<void()>& step);

// A 64-bit hash of tensors' bytes (in order), to check that ranks hold identical state.
uint64_t checksum(const std::vector<std::pair<std::string, Tensor>>& tensors);
// When the ranks' states differ, rank 0 throws Error naming the first tensor that differs and the
// rank, the others PeerFailed.
void check_identical(Communicator& comm, const std::vector<std::pair<std::string, Tensor>>& tensors,
                     const std::string& what);

// Gradient averaging for data-parallel training (torch's DistributedDataParallel reducer):
// parameters are grouped into buckets of about bucket_mb in reverse registration order (the order
// backward produces their gradients); a post-accumulate-grad hook marks a parameter's gradient
// final, and a bucket whose gradients are all final is copied into a flat buffer and its allreduce
// starts at once, while backward goes on. finish() starts the buckets left (gradients that never
// arrived count as zero), waits for all and writes the averages back into .grad.
class GradReducer {
 public:
  GradReducer(Communicator& comm, const std::vector<std::pair<std::string, Tensor>>& params,
              double bucket_mb, bool bf16_compress);
  ~GradReducer();  // removes its hooks
  GradReducer(const GradReducer&) = delete;
  GradReducer& operator=(const GradReducer&) = delete;
  // Whether the coming backward is the last before an optimizer step (gradient accumulation
  // reduces only then, as DDP's no_sync).
  void prepare(bool sync);
  void finish();
  size_t num_buckets() const { return buckets_.size(); }
  double seconds_waiting() const { return wait_seconds_; }  // in finish(), since construction

 private:
  struct Bucket {
    std::vector<size_t> params;  // indices into params_
    std::vector<int64_t> offsets;
    int64_t numel = 0;
    size_t pending = 0;
    Tensor flat;       // f32 (or bf16) buffer on the parameters' device
    std::string name;  // "gradient bucket k", for messages
    WorkPtr work;
  };
  void on_grad_ready(size_t param);
  void launch_ready();
  void launch(Bucket& b);

  Communicator& comm_;
  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<size_t> bucket_of_;
  std::vector<Bucket> buckets_;
  size_t next_launch_ = 0;
  bool sync_ = false, bf16_ = false;
  double wait_seconds_ = 0;
};

}  // namespace scion::train::dist
