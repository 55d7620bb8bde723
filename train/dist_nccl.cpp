// The NCCL communicator (see dist.h): CUDA tensors are reduced by NCCL on a stream of their own,
// after the work already queued on the device (an event on the default stream); host tensors and
// byte exchanges go through the MPI communicator the ranks met on, which also carries NCCL's
// unique id from rank 0 to the others. A collective's deadline is checked by polling its
// completion event and NCCL's asynchronous error state; on a timeout the NCCL communicator is
// aborted (ncclCommAbort), so no rank waits forever on a peer that died.
//
// Built with the CUDA backend and NCCL. A one-GPU machine checks the one-rank path (the [cuda]
// tests: collectives and the gradient reducer over a one-rank NCCL communicator); several ranks
// need a machine with several GPUs.
#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "train/dist.h"

namespace scion::train::dist {

namespace {

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw Error(std::string("NCCL communicator: ") + what + ": " + cudaGetErrorString(e));
}

void check_nccl(ncclResult_t r, const char* what) {
  if (r != ncclSuccess && r != ncclInProgress)
    throw Error(std::string("NCCL communicator: ") + what + ": " + ncclGetErrorString(r));
}

ncclDataType_t nccl_type(DType t, const std::string& what) {
  switch (t) {
    case DType::f32:
      return ncclFloat32;
    case DType::f64:
      return ncclFloat64;
    case DType::bf16:
      return ncclBfloat16;
    default:
      throw Error(what + ": allreduce_sum of a " + dtype_name(t) + " tensor");
  }
}

class NcclCommunicator;

class NcclWork : public Work {
 public:
  NcclWork(NcclCommunicator& c, cudaEvent_t done, std::string what)
      : comm_(c), done_(done), what_(std::move(what)) {}
  ~NcclWork() override { cudaEventDestroy(done_); }
  void wait() override;

 private:
  NcclCommunicator& comm_;
  cudaEvent_t done_;
  std::string what_;
};

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(Communicator& bootstrap, int device, double timeout_seconds)
      : boot_(bootstrap), device_(device), timeout_(timeout_seconds) {
    check_cuda(cudaSetDevice(device), "cudaSetDevice");
    ncclUniqueId id{};
    if (boot_.is_root()) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    std::string bytes(reinterpret_cast<const char*>(&id), sizeof id);
    broadcast_string(boot_, bytes, 0, "NCCL unique id");
    std::memcpy(&id, bytes.data(), sizeof id);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;  // initialization and collectives return at once; we poll with a deadline
    check_nccl(ncclCommInitRankConfig(&comm_, boot_.size(), id, boot_.rank(), &config),
               "ncclCommInitRankConfig");
    wait_ready("NCCL initialization");
    check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  }

  ~NcclCommunicator() override {
    if (comm_ && !aborted_) ncclCommDestroy(comm_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  std::string backend() const override { return "nccl"; }
  int rank() const override { return boot_.rank(); }
  int size() const override { return boot_.size(); }
  int local_size() const override { return boot_.local_size(); }
  int local_rank() const override { return boot_.local_rank(); }

  WorkPtr allreduce_sum(Tensor t, const std::string& what) override {
    if (t.device().type != DeviceType::cuda) return boot_.allreduce_sum(t, what);
    SCION_ASSERT(t.is_contiguous(), what, ": collectives take contiguous tensors");
    after_default_stream();
    check_nccl(ncclAllReduce(t.raw_data(), t.raw_data(), size_t(t.numel()),
                             nccl_type(t.dtype(), what), ncclSum, comm_, stream_),
               "ncclAllReduce");
    return record("allreduce (" + what + ")");
  }

  void broadcast(Tensor t, int root, const std::string& what) override {
    if (t.device().type != DeviceType::cuda) return boot_.broadcast(t, root, what);
    SCION_ASSERT(t.is_contiguous(), what, ": collectives take contiguous tensors");
    after_default_stream();
    const size_t bytes = size_t(t.numel()) * dtype_size(t.dtype());
    check_nccl(ncclBroadcast(t.raw_data(), t.raw_data(), bytes, ncclUint8, root, comm_, stream_),
               "ncclBroadcast");
    record("broadcast (" + what + ")")->wait();
  }

  std::vector<std::string> allgather(const std::string& bytes, const std::string& what) override {
    return boot_.allgather(bytes, what);
  }

  [[noreturn]] void abort(int status) override {
    if (comm_ && !aborted_) ncclCommAbort(comm_);
    aborted_ = true;
    boot_.abort(status);
    std::_Exit(status);  // (boot_.abort does not return)
  }

  // Polls `done` until it completes; throws TimeoutError (after aborting NCCL) past the deadline.
  void wait_event(cudaEvent_t done, const std::string& what) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_);
    for (;;) {
      cudaError_t q = cudaEventQuery(done);
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) check_cuda(q, what.c_str());
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      if (async != ncclSuccess && async != ncclInProgress) {
        ncclCommAbort(comm_);
        aborted_ = true;
        throw Error("rank " + std::to_string(rank()) + ": " + what +
                    " failed: " + ncclGetErrorString(async));
      }
      if (std::chrono::steady_clock::now() > deadline) {
        ncclCommAbort(comm_);
        aborted_ = true;
        throw TimeoutError("rank " + std::to_string(rank()) + ": " + what +
                           " did not complete within " + std::to_string(int(timeout_)) +
                           " s (dist.timeout_seconds): another rank died or stopped responding");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

 private:
  void wait_ready(const std::string& what) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_);
    ncclResult_t state = ncclInProgress;
    while (state == ncclInProgress) {
      ncclCommGetAsyncError(comm_, &state);
      if (std::chrono::steady_clock::now() > deadline) {
        ncclCommAbort(comm_);
        aborted_ = true;
        throw TimeoutError(what + " did not complete within " + std::to_string(int(timeout_)) +
                           " s");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    check_nccl(state, what.c_str());
  }

  // The NCCL stream waits for what the default stream has queued (the gradients' kernels).
  void after_default_stream() {
    cudaEvent_t ready;
    check_cuda(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), "cudaEventCreate");
    check_cuda(cudaEventRecord(ready, 0), "cudaEventRecord");
    check_cuda(cudaStreamWaitEvent(stream_, ready, 0), "cudaStreamWaitEvent");
    cudaEventDestroy(ready);
  }

  WorkPtr record(const std::string& what) {
    cudaEvent_t done;
    check_cuda(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreate");
    check_cuda(cudaEventRecord(done, stream_), "cudaEventRecord");
    return std::make_shared<NcclWork>(*this, done, what);
  }

  Communicator& boot_;
  int device_;
  double timeout_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  bool aborted_ = false;
};

void NcclWork::wait() {
  comm_.wait_event(done_, what_);
}

}  // namespace

std::unique_ptr<Communicator> connect_nccl(Communicator& bootstrap, int cuda_device,
                                           double timeout_seconds) {
  return std::make_unique<NcclCommunicator>(bootstrap, cuda_device, timeout_seconds);
}

}  // namespace scion::train::dist
