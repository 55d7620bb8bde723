// The MPI communicator (see dist.h). MPI is initialized with MPI_THREAD_SERIALIZED and, after
// that, called only from one communication thread: it runs the collectives in the order they were
// issued, each as a nonblocking MPI call polled with MPI_Test (between polls it sleeps, so it
// leaves the cores to the compute threads) until it completes or its deadline passes.
#include <mpi.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "core/dtype.h"
#include "train/dist.h"

namespace scion::train::dist {

bool mpi_available() {
  return true;
}

namespace {

// bf16 addition for MPI_Allreduce: values travel as 16-bit words; each sum is rounded to bf16
// (round to nearest even), as NCCL's bf16 allreduce.
void bf16_sum(void* in, void* inout, int* len, MPI_Datatype*) {
  const auto* a = static_cast<const BFloat16*>(in);
  auto* b = static_cast<BFloat16*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = BFloat16(float(a[i]) + float(b[i]));
}

// One collective's completion, shared between the caller and the communication thread.
struct Pending {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::string error;  // set when the collective failed or timed out
  bool timed_out = false;
};

class MpiWork : public Work {
 public:
  explicit MpiWork(std::shared_ptr<Pending> p) : p_(std::move(p)) {}
  void wait() override {
    std::unique_lock<std::mutex> lock(p_->mu);
    p_->cv.wait(lock, [&] { return p_->done; });
    if (p_->timed_out) throw TimeoutError(p_->error);
    if (!p_->error.empty()) throw Error(p_->error);
  }

 private:
  std::shared_ptr<Pending> p_;
};

// Collectives at least this large synchronize before their transfer (see MpiCommunicator::run).
constexpr int64_t kBulkBytes = 64 * 1024;

class MpiCommunicator : public Communicator {
 public:
  explicit MpiCommunicator(double timeout_seconds) : timeout_(timeout_seconds) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    SCION_ASSERT(!initialized, "MPI is already initialized (one communicator per process)");
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
    if (provided < MPI_THREAD_SERIALIZED) {
      MPI_Finalize();
      throw Error("MPI provides thread level " + std::to_string(provided) +
                  "; scion needs MPI_THREAD_SERIALIZED (a communication thread)");
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    MPI_Comm local;
    MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local);
    MPI_Comm_size(local, &local_size_);
    MPI_Comm_rank(local, &local_rank_);
    MPI_Comm_free(&local);
    MPI_Op_create(&bf16_sum, /*commute=*/1, &bf16_op_);
    thread_ = std::thread([this] { loop(); });
  }

  ~MpiCommunicator() override {
    stop_thread();
    if (failed_) return;  // a peer is gone: MPI_Finalize could wait for it forever
    MPI_Op_free(&bf16_op_);
    MPI_Comm_free(&comm_);
    MPI_Finalize();
  }

  std::string backend() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_size() const override { return local_size_; }
  int local_rank() const override { return local_rank_; }

  WorkPtr allreduce_sum(Tensor t, const std::string& what) override {
    check_host(t, what);
    MPI_Datatype type = MPI_FLOAT;
    MPI_Op op = MPI_SUM;
    switch (t.dtype()) {
      case DType::f32:
        break;
      case DType::f64:
        type = MPI_DOUBLE;
        break;
      case DType::bf16:
        type = MPI_UINT16_T;
        op = bf16_op_;
        break;
      default:
        throw Error(what + ": allreduce_sum of a " + dtype_name(t.dtype()) + " tensor");
    }
    return submit(
        "allreduce (" + what + ")",
        [this, t, type, op](MPI_Request* r) {
          return MPI_Iallreduce(MPI_IN_PLACE, t.raw_data(), int(t.numel()), type, op, comm_, r);
        },
        t.numel() * int64_t(dtype_size(t.dtype())));
  }

  void broadcast(Tensor t, int root, const std::string& what) override {
    check_host(t, what);
    const int bytes = int(t.numel() * int64_t(dtype_size(t.dtype())));
    submit(
        "broadcast (" + what + ")",
        [this, t, root, bytes](MPI_Request* r) {
          return MPI_Ibcast(t.raw_data(), bytes, MPI_BYTE, root, comm_, r);
        },
        bytes)
        ->wait();
  }

  std::vector<std::string> allgather(const std::string& bytes, const std::string& what) override {
    std::vector<int> sizes(size_t(size_), 0);
    int mine = int(bytes.size());
    submit("allgather sizes (" + what + ")", [&](MPI_Request* r) {
      return MPI_Iallgather(&mine, 1, MPI_INT, sizes.data(), 1, MPI_INT, comm_, r);
    })->wait();
    std::vector<int> displs(size_t(size_), 0);
    for (int i = 1; i < size_; ++i)
      displs[size_t(i)] = displs[size_t(i - 1)] + sizes[size_t(i - 1)];
    std::string all(size_t(displs.back() + sizes.back()), '\0');
    submit("allgather (" + what + ")", [&](MPI_Request* r) {
      return MPI_Iallgatherv(bytes.data(), mine, MPI_CHAR, all.data(), sizes.data(), displs.data(),
                             MPI_CHAR, comm_, r);
    })->wait();
    std::vector<std::string> out;
    for (int i = 0; i < size_; ++i)
      out.push_back(all.substr(size_t(displs[size_t(i)]), size_t(sizes[size_t(i)])));
    return out;
  }

  [[noreturn]] void abort(int status) override {
    std::fflush(stdout);
    std::fflush(stderr);
    stop_thread();
    MPI_Abort(MPI_COMM_WORLD, status);
    std::_Exit(status);
  }

 private:
  using Start = std::function<int(MPI_Request*)>;
  struct Op {
    std::string what;
    Start start;
    std::shared_ptr<Pending> pending;
    bool bulk = false;  // large enough to synchronize first (see run)
    std::chrono::steady_clock::time_point deadline;
  };

  static void check_host(const Tensor& t, const std::string& what) {
    SCION_ASSERT(t.device().type != DeviceType::cuda, what,
                 ": the MPI communicator takes host tensors (CUDA tensors go through NCCL)");
    SCION_ASSERT(t.is_contiguous(), what, ": collectives take contiguous tensors");
  }

  WorkPtr submit(std::string what, Start start, int64_t bytes = 0) {
    auto p = std::make_shared<Pending>();
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(Op{std::move(what), std::move(start), p, bytes >= kBulkBytes, {}});
    }
    cv_.notify_one();
    return std::make_shared<MpiWork>(p);
  }

  void stop_thread() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

  static void finish(Pending& p, std::string error, bool timed_out) {
    std::lock_guard<std::mutex> lock(p.mu);
    p.done = true;
    p.error = std::move(error);
    p.timed_out = timed_out;
    p.cv.notify_all();
  }

  // The communication thread: one collective at a time, in issue order.
  void loop() {
    for (;;) {
      Op op;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping, nothing left
        op = std::move(queue_.front());
        queue_.pop_front();
      }
      op.deadline = std::chrono::steady_clock::now() +
                    std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                        std::chrono::duration<double>(timeout_));
      if (failed_) {  // after a failure nothing more can complete
        finish(*op.pending, failure_, failure_timed_out_);
        continue;
      }
      run(op);
    }
  }

  // A large collective first waits, gently, until every rank has reached it (a nonblocking
  // barrier polled with short sleeps: while a peer is still computing, this thread leaves the
  // cores to the compute threads); then its transfer is polled without pause, because MPI moves
  // data only inside MPI calls (shared memory fragment by fragment) and every pause would stall it.
  void run(Op& op) {
    int rc = MPI_SUCCESS;
    if (op.bulk) {
      MPI_Request ready = MPI_REQUEST_NULL;
      rc = MPI_Ibarrier(comm_, &ready);
      if (rc == MPI_SUCCESS && !poll(op, ready, /*gentle=*/true, rc)) return;
    }
    MPI_Request req = MPI_REQUEST_NULL;
    if (rc == MPI_SUCCESS) rc = op.start(&req);
    if (rc == MPI_SUCCESS && !poll(op, req, /*gentle=*/!op.bulk, rc)) return;
    if (rc != MPI_SUCCESS) {
      char msg[MPI_MAX_ERROR_STRING];
      int len = 0;
      MPI_Error_string(rc, msg, &len);
      fail(op,
           "rank " + std::to_string(rank_) + ": " + op.what +
               " failed: " + std::string(msg, size_t(len)),
           false);
      return;
    }
    finish(*op.pending, "", false);
  }

  // Tests `req` until it completes (true; rc holds an MPI error, if any) or the op's deadline
  // passes or shutdown begins (false, the op failed). Gentle polling sleeps between tests.
  bool poll(Op& op, MPI_Request& req, bool gentle, int& rc) {
    int done = 0;
    auto nap = std::chrono::microseconds(2);
    for (uint64_t i = 0;; ++i) {
      rc = MPI_Test(&req, &done, MPI_STATUS_IGNORE);
      if (rc != MPI_SUCCESS || done) return true;
      if (!gentle && i % 256 != 0) continue;  // look at the clock now and then
      if (std::chrono::steady_clock::now() > op.deadline) {
        fail(op,
             "rank " + std::to_string(rank_) + ": " + op.what + " did not complete within " +
                 std::to_string(int(timeout_)) +
                 " s (dist.timeout_seconds): another rank died, stopped responding or "
                 "issued different collectives",
             true);
        return false;
      }
      if (stopping_) {
        fail(op, "rank " + std::to_string(rank_) + ": " + op.what + " abandoned at shutdown",
             false);
        return false;
      }
      if (gentle) {
        std::this_thread::sleep_for(nap);
        nap = std::min(nap * 2, std::chrono::microseconds(100));
      }
    }
  }

  void fail(Op& op, const std::string& message, bool timed_out) {
    failed_ = true;
    failure_ = message;
    failure_timed_out_ = timed_out;
    finish(*op.pending, message, timed_out);
  }

  double timeout_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  MPI_Op bf16_op_ = MPI_OP_NULL;
  int rank_ = 0, size_ = 1, local_size_ = 1, local_rank_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Op> queue_;
  std::atomic<bool> stopping_{false}, failed_{false};
  std::string failure_;
  bool failure_timed_out_ = false;
};

}  // namespace

std::unique_ptr<Communicator> connect_mpi(double timeout_seconds) {
  return std::make_unique<MpiCommunicator>(timeout_seconds);
}

}  // namespace scion::train::dist
