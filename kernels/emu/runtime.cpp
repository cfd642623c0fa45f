// The emulator's scheduler: runs a grid of blocks on CPU threads, each block's
// threads as cooperative fibers, with barriers, warp collectives, deferred
// cp.async, dynamic shared memory behind a guard page, and error reports that
// name the kernel, block and thread.
//
// Entry point for Rust: memwall_emu_launch (bottom of this file).

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "memwall_emu/cuda_emu.h"
#include "memwall_emu/registry.h"

extern "C" void memwall_emu_switch(void** save_sp, void* next_sp);

// The built-in variables of the running thread (see cuda_emu.h).
thread_local uint3 threadIdx;
thread_local uint3 blockIdx;
thread_local dim3 blockDim;
thread_local dim3 gridDim;

namespace memwall_emu {
namespace {

constexpr size_t kStackBytes = 256 * 1024;  // per emulated thread, lazily committed

size_t page_size() {
  static const size_t p = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return p;
}

// An anonymous mapping of `usable` bytes followed by one PROT_NONE guard page
// (or preceded by it, for stacks that grow down).
struct GuardedRegion {
  unsigned char* map = nullptr;
  size_t map_bytes = 0;
  unsigned char* usable = nullptr;
  size_t usable_bytes = 0;
  unsigned char* guard = nullptr;

  bool allocate(size_t bytes, bool guard_below) {
    release();
    const size_t page = page_size();
    usable_bytes = (bytes + page - 1) / page * page;
    map_bytes = usable_bytes + page;
    void* m = mmap(nullptr, map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
      map = nullptr;
      return false;
    }
    map = static_cast<unsigned char*>(m);
    guard = guard_below ? map : map + usable_bytes;
    usable = guard_below ? map + page : map;
    mprotect(guard, page, PROT_NONE);
    return true;
  }
  void release() {
    if (map) munmap(map, map_bytes);
    map = nullptr;
  }
  GuardedRegion() = default;
  GuardedRegion(const GuardedRegion&) = delete;
  GuardedRegion& operator=(const GuardedRegion&) = delete;
  GuardedRegion(GuardedRegion&& o) noexcept { *this = std::move(o); }
  GuardedRegion& operator=(GuardedRegion&& o) noexcept {
    if (this != &o) {
      release();
      map = o.map;
      map_bytes = o.map_bytes;
      usable = o.usable;
      usable_bytes = o.usable_bytes;
      guard = o.guard;
      o.map = nullptr;
    }
    return *this;
  }
  bool in_guard(const void* p) const {
    auto a = static_cast<const unsigned char*>(p);
    return map && a >= guard && a < guard + page_size();
  }
  ~GuardedRegion() { release(); }
};

// Fiber stacks outlive launches: mapping and protecting 1024 stacks costs
// ~10 ms, far more than most test kernels run. Released stacks return here.
struct StackPool {
  std::mutex lock;
  std::vector<GuardedRegion> free;
  static constexpr size_t kMaxFree = 4096;
} g_stack_pool;

bool acquire_stack(GuardedRegion& r) {
  {
    std::lock_guard<std::mutex> guard(g_stack_pool.lock);
    if (!g_stack_pool.free.empty()) {
      r = std::move(g_stack_pool.free.back());
      g_stack_pool.free.pop_back();
      return true;
    }
  }
  return r.allocate(kStackBytes, /*guard_below=*/true);
}

void release_stack(GuardedRegion& r) {
  if (!r.map) return;
  std::lock_guard<std::mutex> guard(g_stack_pool.lock);
  if (g_stack_pool.free.size() < StackPool::kMaxFree) g_stack_pool.free.push_back(std::move(r));
}

struct AsyncCopy {
  void* dst;
  const void* src;
  unsigned bytes;
  unsigned src_bytes;
};

enum class State { Runnable, AtBarrier, AtWarp, Done };

struct Fiber {
  GuardedRegion stack;
  void* sp = nullptr;
  State state = State::Runnable;
  uint3 tid{};
  unsigned linear = 0;
  // At a barrier.
  const char* bar_file = nullptr;
  int bar_line = 0;
  // In a warp collective.
  unsigned coll_mask = 0;
  const char* coll_what = nullptr;
  const void* coll_in = nullptr;
  void* coll_out = nullptr;
  CollectiveFn coll_fn = nullptr;
  const void* coll_site = nullptr;  // return address in the kernel: the call site
  // cp.async: committed groups, oldest first, and the group being built.
  std::vector<std::vector<AsyncCopy>> groups;
  std::vector<AsyncCopy> open_group;
};

// Everything one CPU thread needs to run blocks.
struct Worker {
  std::vector<Fiber> fibers;
  unsigned fiber_count = 0;
  void* sched_sp = nullptr;
  Fiber* cur = nullptr;
  GuardedRegion smem;
  unsigned char* smem_base = nullptr;
  size_t smem_bytes = 0;
  const KernelEntry* entry = nullptr;
  const char* kernel = nullptr;
  void* const* args = nullptr;
  bool failed = false;
  std::string error;
  sigjmp_buf recover;
  std::vector<unsigned char> altstack;
};

thread_local Worker* tl_worker = nullptr;

std::string where(const Worker& w, const Fiber* f) {
  char buf[256];
  if (f) {
    snprintf(buf, sizeof buf, "kernel %s, block (%u,%u,%u), thread (%u,%u,%u): ", w.kernel, blockIdx.x, blockIdx.y,
             blockIdx.z, f->tid.x, f->tid.y, f->tid.z);
  } else {
    snprintf(buf, sizeof buf, "kernel %s, block (%u,%u,%u): ", w.kernel, blockIdx.x, blockIdx.y, blockIdx.z);
  }
  return buf;
}

void set_error(Worker& w, const Fiber* f, const std::string& msg) {
  if (w.failed) return;
  w.failed = true;
  w.error = where(w, f) + msg;
}

// --- fibers -----------------------------------------------------------------

void flush_async(Fiber& f, size_t keep);

[[noreturn]] void fiber_main() {
  Worker* w = tl_worker;
  w->entry->invoke(w->args);
  Fiber* f = w->cur;
  flush_async(*f, 0);
  f->state = State::Done;
  memwall_emu_switch(&f->sp, w->sched_sp);
  __builtin_unreachable();
}

// Lays out a fresh stack so that memwall_emu_switch "returns" into fiber_main.
void* prepare_stack(Fiber& f) {
  auto top = reinterpret_cast<uintptr_t>(f.stack.usable + f.stack.usable_bytes);
  top &= ~uintptr_t{15};
  auto* slot = reinterpret_cast<uint64_t*>(top);
  *--slot = 0;                                          // fake return address of fiber_main
  *--slot = reinterpret_cast<uint64_t>(&fiber_main);    // popped by `ret`
  for (int i = 0; i < 6; ++i) *--slot = 0;              // rbp rbx r12 r13 r14 r15
  uint32_t mxcsr;
  uint16_t fcw;
  __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
  __asm__ volatile("fnstcw %0" : "=m"(fcw));
  *--slot = static_cast<uint64_t>(mxcsr) | (static_cast<uint64_t>(fcw) << 32);
  return slot;
}

void yield_to_scheduler() {
  Worker* w = tl_worker;
  memwall_emu_switch(&w->cur->sp, w->sched_sp);
}

// --- cp.async -----------------------------------------------------------------

void apply(const AsyncCopy& c) {
  memcpy(c.dst, c.src, c.src_bytes);
  if (c.src_bytes < c.bytes) memset(static_cast<unsigned char*>(c.dst) + c.src_bytes, 0, c.bytes - c.src_bytes);
}

// Completes every committed group except the newest `keep`.
void flush_async(Fiber& f, size_t keep) {
  if (keep == 0 && !f.open_group.empty()) {
    // At thread exit the hardware finishes uncommitted copies too.
    f.groups.push_back(std::move(f.open_group));
    f.open_group.clear();
  }
  while (f.groups.size() > keep) {
    for (const AsyncCopy& c : f.groups.front()) apply(c);
    f.groups.erase(f.groups.begin());
  }
}

// --- warps --------------------------------------------------------------------

const char* state_name(const Fiber& f) {
  switch (f.state) {
    case State::Runnable: return "running";
    case State::AtBarrier: return "waiting at __syncthreads";
    case State::AtWarp: return "waiting in a warp collective";
    case State::Done: return "exited";
  }
  return "?";
}

// Completes the warp collectives whose lanes have all arrived. Returns whether
// any completed; sets the worker's error on a mask that cannot be satisfied.
bool resolve_warps(Worker& w) {
  bool released = false;
  const unsigned n = w.fiber_count;
  for (unsigned base = 0; base < n && !w.failed; base += 32) {
    const unsigned lanes = n - base < 32 ? n - base : 32;
    for (unsigned l = 0; l < lanes && !w.failed; ++l) {
      Fiber& f = w.fibers[base + l];
      if (f.state != State::AtWarp) continue;
      const unsigned mask = f.coll_mask;
      bool ready = true;
      for (unsigned j = 0; j < 32 && ready; ++j) {
        if (!(mask >> j & 1)) continue;
        char msg[512];
        if (j >= lanes) {
          snprintf(msg, sizeof msg, "%s with mask 0x%08x names lane %u, but this warp has only %u lanes",
                   f.coll_what, mask, j, lanes);
          set_error(w, &f, msg);
          return released;
        }
        const Fiber& g = w.fibers[base + j];
        if (g.state == State::Runnable) {
          ready = false;
        } else if (g.state == State::AtWarp) {
          if (g.coll_mask != mask || g.coll_fn != f.coll_fn) {
            snprintf(msg, sizeof msg,
                     "warp collective mask disagreement: lane %u is in %s with mask 0x%08x, lane %u is in %s with "
                     "mask 0x%08x",
                     l, f.coll_what, mask, j, g.coll_what, g.coll_mask);
            set_error(w, &f, msg);
            return released;
          }
        } else {
          if (g.state == State::AtBarrier) {
            snprintf(msg, sizeof msg,
                     "deadlock: lane %u waits in %s with mask 0x%08x, but lane %u is waiting at __syncthreads "
                     "(%s:%d)",
                     l, f.coll_what, mask, j, g.bar_file, g.bar_line);
          } else {
            snprintf(msg, sizeof msg, "%s with mask 0x%08x waits for lane %u, which has %s", f.coll_what, mask, j,
                     state_name(g));
          }
          set_error(w, &f, msg);
          return released;
        }
      }
      if (!ready) continue;
      // Lanes at the same call site whose masks overlap this group's but
      // differ from it: on a GPU that is undefined (typically a hang).
      for (unsigned k = 0; k < lanes; ++k) {
        const Fiber& o = w.fibers[base + k];
        if ((mask >> k & 1) || o.state != State::AtWarp || o.coll_site != f.coll_site || !(o.coll_mask & mask))
          continue;
        char msg[512];
        snprintf(msg, sizeof msg,
                 "warp collective mask disagreement: lane %u is in %s with mask 0x%08x, lane %u is in the same one "
                 "with mask 0x%08x",
                 l, f.coll_what, mask, k, o.coll_mask);
        set_error(w, &f, msg);
        return released;
      }
      WarpInputs all{};
      all.mask = mask;
      for (unsigned j = 0; j < 32; ++j) all.inputs[j] = (mask >> j & 1) ? w.fibers[base + j].coll_in : nullptr;
      for (unsigned j = 0; j < 32; ++j) {
        if (!(mask >> j & 1)) continue;
        Fiber& g = w.fibers[base + j];
        if (const char* err = g.coll_fn(all, j, g.coll_out)) {
          set_error(w, &g, std::string(g.coll_what) + ": " + err);
          return released;
        }
        g.state = State::Runnable;
      }
      released = true;
    }
  }
  return released;
}

// --- blocks -------------------------------------------------------------------

// Called when no thread can run: releases a barrier or reports why not.
// Returns true when the block is finished.
bool settle(Worker& w) {
  const Fiber* waiting = nullptr;
  const Fiber* done = nullptr;
  for (unsigned i = 0; i < w.fiber_count; ++i) {
    const Fiber& f = w.fibers[i];
    if (f.state == State::AtBarrier && !waiting) waiting = &f;
    if (f.state == State::Done && !done) done = &f;
    if (f.state == State::AtWarp) {
      set_error(w, &f, std::string("deadlock in ") + f.coll_what);
      return true;
    }
  }
  if (!waiting) return true;  // every thread exited
  char msg[512];
  if (done) {
    snprintf(msg, sizeof msg,
             "barrier divergence: thread (%u,%u,%u) waits at __syncthreads (%s:%d), but thread (%u,%u,%u) has exited "
             "without reaching it",
             waiting->tid.x, waiting->tid.y, waiting->tid.z, waiting->bar_file, waiting->bar_line, done->tid.x,
             done->tid.y, done->tid.z);
    set_error(w, nullptr, msg);
    return true;
  }
  for (unsigned i = 0; i < w.fiber_count; ++i) {
    const Fiber& f = w.fibers[i];
    if (f.bar_line != waiting->bar_line || strcmp(f.bar_file, waiting->bar_file) != 0) {
      snprintf(msg, sizeof msg,
               "barrier divergence: thread (%u,%u,%u) waits at __syncthreads (%s:%d), thread (%u,%u,%u) at a different "
               "one (%s:%d)",
               waiting->tid.x, waiting->tid.y, waiting->tid.z, waiting->bar_file, waiting->bar_line, f.tid.x, f.tid.y,
               f.tid.z, f.bar_file, f.bar_line);
      set_error(w, nullptr, msg);
      return true;
    }
  }
  for (unsigned i = 0; i < w.fiber_count; ++i) w.fibers[i].state = State::Runnable;
  return false;
}

void poison(unsigned char* p, size_t n) { memset(p, 0xFF, n); }  // NaN as f32/f16/bf16, -1 as ints

void run_block(Worker& w, uint3 block) {
  blockIdx = block;
  if (w.smem_bytes) poison(w.smem_base, w.smem_bytes);
  for (unsigned i = 0; i < w.fiber_count; ++i) {
    Fiber& f = w.fibers[i];
    f.state = State::Runnable;
    f.linear = i;
    f.tid = uint3{i % blockDim.x, i / blockDim.x % blockDim.y, i / (blockDim.x * blockDim.y)};
    f.groups.clear();
    f.open_group.clear();
    f.sp = prepare_stack(f);
  }
  for (;;) {
    bool ran = false;
    for (unsigned i = 0; i < w.fiber_count; ++i) {
      Fiber& f = w.fibers[i];
      if (f.state != State::Runnable) continue;
      w.cur = &f;
      threadIdx = f.tid;
      memwall_emu_switch(&w.sched_sp, f.sp);
      w.cur = nullptr;
      ran = true;
      if (w.failed) return;
    }
    const bool released = resolve_warps(w);
    if (w.failed) return;
    if (ran || released) continue;
    if (settle(w)) return;
  }
}

// --- faults -------------------------------------------------------------------

struct sigaction g_previous_segv;
struct sigaction g_previous_bus;

void on_fault(int sig, siginfo_t* info, void* ctx) {
  Worker* w = tl_worker;
  if (w && !w->failed) {
    const void* addr = info->si_addr;
    char msg[256];
    bool ours = false;
    if (w->smem.in_guard(addr)) {
      const long off = static_cast<const unsigned char*>(addr) - w->smem_base;
      snprintf(msg, sizeof msg, "dynamic shared memory access out of bounds at byte offset %ld (%zu bytes allocated)",
               off, w->smem_bytes);
      ours = true;
    } else if (w->cur && w->cur->stack.in_guard(addr)) {
      snprintf(msg, sizeof msg, "stack overflow of the emulated thread (%zu KiB stack)", kStackBytes / 1024);
      ours = true;
    }
    if (ours) {
      set_error(*w, w->cur, msg);
      siglongjmp(w->recover, 1);
    }
  }
  // Not an emulator fault: hand it to whoever handled it before.
  const struct sigaction& prev = sig == SIGBUS ? g_previous_bus : g_previous_segv;
  if (prev.sa_flags & SA_SIGINFO) {
    prev.sa_sigaction(sig, info, ctx);
  } else if (prev.sa_handler != SIG_IGN && prev.sa_handler != SIG_DFL) {
    prev.sa_handler(sig);
  } else {
    signal(sig, SIG_DFL);
    raise(sig);
  }
}

void install_fault_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_previous_segv);
    sigaction(SIGBUS, &sa, &g_previous_bus);
  });
}

// --- grids --------------------------------------------------------------------

struct Grid {
  const KernelEntry* entry;
  const char* kernel;
  dim3 grid, block;
  size_t smem_bytes;
  void* const* args;
  std::atomic<uint64_t> next{0};
  std::atomic<bool> stop{false};
  std::mutex error_lock;
  uint64_t error_block = UINT64_MAX;
  std::string error;
};

void run_worker(Grid& g) {
  Worker w;
  tl_worker = &w;
  w.entry = g.entry;
  w.kernel = g.kernel;
  w.args = g.args;
  blockDim = g.block;
  gridDim = g.grid;
  const uint64_t blocks = uint64_t{g.grid.x} * g.grid.y * g.grid.z;
  w.fiber_count = g.block.x * g.block.y * g.block.z;

  // An alternate signal stack, so a fiber stack overflow can still be reported.
  w.altstack.resize(64 * 1024);
  stack_t ss{}, old_ss{};
  ss.ss_sp = w.altstack.data();
  ss.ss_size = w.altstack.size();
  sigaltstack(&ss, &old_ss);

  auto report = [&](uint64_t b) {
    std::lock_guard<std::mutex> lock(g.error_lock);
    if (b < g.error_block) {
      g.error_block = b;
      g.error = w.error;
    }
    g.stop = true;
  };

  w.fibers.resize(w.fiber_count);
  struct ReturnStacks {
    Worker& w;
    ~ReturnStacks() {
      for (Fiber& f : w.fibers) release_stack(f.stack);
    }
  } return_stacks{w};
  for (Fiber& f : w.fibers) {
    if (!acquire_stack(f.stack)) {
      w.failed = true;
      w.error = std::string("cannot map emulated thread stacks: ") + strerror(errno);
      report(0);
      sigaltstack(&old_ss, nullptr);
      tl_worker = nullptr;
      return;
    }
  }
  if (g.smem_bytes) {
    const size_t rounded = (g.smem_bytes + 15) / 16 * 16;
    if (!w.smem.allocate(rounded, /*guard_below=*/false)) {
      w.failed = true;
      w.error = std::string("cannot map dynamic shared memory: ") + strerror(errno);
      report(0);
      sigaltstack(&old_ss, nullptr);
      tl_worker = nullptr;
      return;
    }
    // End the buffer exactly at the guard page, so an access past it faults.
    w.smem_base = w.smem.guard - rounded;
    w.smem_bytes = g.smem_bytes;
  }

  // The block being run; volatile because it is read after siglongjmp.
  volatile uint64_t b = 0;
  if (sigsetjmp(w.recover, 1) != 0) {
    report(b);  // a fault in block b, already described in w.error
  } else {
    while (!g.stop.load(std::memory_order_relaxed)) {
      b = g.next.fetch_add(1);
      if (b >= blocks) break;
      const uint64_t i = b;
      const uint3 block{static_cast<unsigned>(i % g.grid.x), static_cast<unsigned>(i / g.grid.x % g.grid.y),
                        static_cast<unsigned>(i / (uint64_t{g.grid.x} * g.grid.y))};
      run_block(w, block);
      if (w.failed) {
        report(b);
        break;
      }
    }
  }
  sigaltstack(&old_ss, nullptr);
  tl_worker = nullptr;
}

}  // namespace

// --- the device-side runtime API (runtime.h) ----------------------------------------

__attribute__((noinline)) void warp_collective(unsigned mask, const char* what, const void* in, void* out,
                                               CollectiveFn fn) {
  Worker* w = tl_worker;
  Fiber* f = w->cur;
  const unsigned lane = f->linear % 32;
  if (!(mask >> lane & 1)) fail("%s called with mask 0x%08x, which does not include the calling lane %u", what, mask, lane);
  f->coll_mask = mask;
  f->coll_what = what;
  f->coll_in = in;
  f->coll_out = out;
  f->coll_fn = fn;
  // The wrappers in cuda_emu.h and prim/ are always inlined, so this is the
  // collective's call site in the kernel.
  f->coll_site = __builtin_return_address(0);
  f->state = State::AtWarp;
  yield_to_scheduler();
}

void syncthreads(const char* file, int line) {
  Worker* w = tl_worker;
  Fiber* f = w->cur;
  f->bar_file = file;
  f->bar_line = line;
  f->state = State::AtBarrier;
  yield_to_scheduler();
}

void fail(const char* fmt, ...) {
  Worker* w = tl_worker;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  set_error(*w, w->cur, msg);
  yield_to_scheduler();  // the scheduler sees `failed` and never resumes us
  __builtin_unreachable();
}

unsigned lane_id() { return tl_worker->cur->linear % 32; }
unsigned warp_id() { return tl_worker->cur->linear / 32; }

unsigned active_mask() {
  Worker* w = tl_worker;
  const unsigned base = w->cur->linear / 32 * 32;
  unsigned mask = 0;
  for (unsigned l = 0; l < 32 && base + l < w->fiber_count; ++l)
    if (w->fibers[base + l].state != State::Done) mask |= 1u << l;
  return mask;
}

const char* ballot_result(const WarpInputs& all, unsigned lane, void* out) {
  unsigned bits = 0;
  for (unsigned j = 0; j < 32; ++j)
    if (all.inputs[j] && *static_cast<const int*>(all.inputs[j])) bits |= 1u << j;
  *static_cast<unsigned*>(out) = bits;
  (void)lane;
  return nullptr;
}

const char* syncwarp_result(const WarpInputs&, unsigned, void*) { return nullptr; }

unsigned char* dynamic_smem() { return tl_worker->smem_base; }
size_t dynamic_smem_bytes() { return tl_worker->smem_bytes; }

void cp_async_enqueue(void* dst, const void* src, unsigned bytes, unsigned src_bytes) {
  if (src_bytes > bytes) fail("cp.async: src-size %u exceeds cp-size %u", src_bytes, bytes);
  tl_worker->cur->open_group.push_back(AsyncCopy{dst, src, bytes, src_bytes});
}

void cp_async_commit() {
  Fiber* f = tl_worker->cur;
  f->groups.push_back(std::move(f->open_group));
  f->open_group.clear();
}

void cp_async_wait(unsigned keep) { flush_async(*tl_worker->cur, keep); }

}  // namespace memwall_emu

// Runs `entry` over a grid. Returns 0, or 1 with a message in `err` (NUL
// terminated, truncated to `err_len`). `workers` CPU threads run blocks.
extern "C" int memwall_emu_launch(const memwall_emu::KernelEntry* entry, const uint32_t grid[3],
                                  const uint32_t block[3], size_t smem_bytes, void* const* args, unsigned workers,
                                  char* err, size_t err_len) {
  using namespace memwall_emu;
  install_fault_handler();
  Grid g;
  g.entry = entry;
  g.kernel = entry->name;
  g.grid = dim3(grid[0], grid[1], grid[2]);
  g.block = dim3(block[0], block[1], block[2]);
  g.smem_bytes = smem_bytes;
  g.args = args;
  const uint64_t blocks = uint64_t{grid[0]} * grid[1] * grid[2];
  if (workers == 0) workers = 1;
  if (workers > blocks) workers = static_cast<unsigned>(blocks);
  if (workers <= 1) {
    run_worker(g);
  } else {
    std::vector<std::thread> pool;
    for (unsigned i = 0; i < workers; ++i) pool.emplace_back([&g] { run_worker(g); });
    for (auto& t : pool) t.join();
  }
  if (g.error_block == UINT64_MAX) return 0;
  snprintf(err, err_len, "%s", g.error.c_str());
  return 1;
}
