/* framepool._ring: the shared-memory frame ring between the supervisor and the workers (both processes).
 *
 * A single-producer single-consumer ring of fixed-size slots in a memfd, plus an eventfd "doorbell".
 * The layout is specified, byte for byte, by the pure-Python reference daemon/ipc/pyring.py; both
 * implementations interoperate on the same memory (tests/unit/test_ring.py crosses them). The ring moves
 * descriptors without interpreting them: what kind, fmt, a, b and c mean is daemon/ipc/slots.py's.
 *
 * Ordering: the producer fills a slot and its descriptor, then publishes it with a release store of
 * `head`; the consumer loads `head` with acquire before reading the slot and frees it with a release store
 * of `tail`. Sleeping consumers use Dekker's protocol (store own flag, seq_cst fence, load the other side's
 * word) so a wake-up is never lost and the common path makes no syscall.
 *
 * Safety against misuse from Python: the frame memoryview exports this object's buffer and is counted, and
 * close() refuses while views exist or while another thread copies with the GIL released, so nothing is
 * ever unmapped under a live pointer. Bytes written by a hostile or buggy peer are validated before use
 * (indices, descriptor lengths), and read once into local copies.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RING_MAGIC 0x31474E4952504646ULL /* "FFPRING1" */
#define BELL_MAGIC 0x314C4C4542504646ULL /* "FFPBELL1" */
#define RING_VERSION 2u
#define MAX_SLOT_COUNT (1u << 16)
#define MAX_SLOT_SIZE (1ULL << 31)
#define GIL_FREE_COPY (64 * 1024) /* below this, releasing the GIL costs more than the copy */

enum { FLAG_GAP = 1, FLAG_EOS = 2 };
enum { POLICY_BLOCK = 0, POLICY_DROP_NEWEST = 1, POLICY_LATEST = 2 };

typedef struct {
    uint64_t magic;
    uint32_t version;
    uint32_t slot_count;
    uint64_t slot_size;
    uint32_t policy;
    uint32_t checksum; /* FNV-1a of the 28 bytes above */
    char pad0[32];
    _Atomic uint64_t head; /* producer index; its own cache line */
    char pad1[56];
    _Atomic uint64_t tail; /* consumer index */
    char pad2[56];
    _Atomic uint64_t written; /* producer-owned line */
    _Atomic uint64_t dropped;
    _Atomic uint64_t gap_pending;
    _Atomic uint64_t last_slot; /* payload slot of the newest frame written */
    char pad3[32];
    _Atomic uint64_t skipped; /* consumer-owned line */
    _Atomic uint64_t read;
    char pad4[48];
    _Atomic uint32_t producer_waiting; /* set by the producer, exchanged by the consumer */
} ring_control;

_Static_assert(offsetof(ring_control, checksum) == 28, "layout");
_Static_assert(offsetof(ring_control, head) == 64, "layout");
_Static_assert(offsetof(ring_control, tail) == 128, "layout");
_Static_assert(offsetof(ring_control, written) == 192, "layout");
_Static_assert(offsetof(ring_control, gap_pending) == 208, "layout");
_Static_assert(offsetof(ring_control, last_slot) == 216, "layout");
_Static_assert(offsetof(ring_control, skipped) == 256, "layout");
_Static_assert(offsetof(ring_control, read) == 264, "layout");
_Static_assert(offsetof(ring_control, producer_waiting) == 320, "layout");
_Static_assert(sizeof(_Atomic uint64_t) == 8 && sizeof(_Atomic uint32_t) == 4, "lock-free atomics");

typedef struct {
    uint64_t seq;
    int64_t ts_us;
    uint32_t kind, fmt, flags, a, b, c;
    uint64_t length;
    uint32_t slot; /* the payload slot holding the frame */
    char pad[12];
} frame_desc;

_Static_assert(sizeof(frame_desc) == 64, "one descriptor per cache line");
_Static_assert(offsetof(frame_desc, slot) == 48, "layout");

#define BELL_SLEEPING_OFF 64

static PyObject *RingError;
static size_t page_size;

static uint32_t header_checksum(const void *header) {
    const unsigned char *bytes = header;
    uint32_t h = 0x811C9DC5u;
    for (int i = 0; i < 28; i++) h = (h ^ bytes[i]) * 0x01000193u;
    return h;
}

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

static size_t payload_offset(uint32_t slot_count) {
    return round_up(page_size + (size_t)slot_count * sizeof(frame_desc), page_size);
}

static PyObject *ring_error_errno(const char *what, int fd) {
    return PyErr_Format(RingError, "%s fd %d: %s", what, fd, strerror(errno));
}

/* Every memfd the supervisor shares with a worker is sealed right after it is sized: a worker that could
   shrink it would kill the supervisor with SIGBUS on its next access to the mapping, and one that could grow
   it could make the supervisor map memory it never meant to. F_SEAL_SEAL keeps the seals from being lifted.
   Writes stay allowed (the rings are written by both sides); only the size is frozen. */
#define REQUIRED_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

static int create_sealed_memfd(const char *name, size_t size) {
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return -1;
    if (ftruncate(fd, (off_t)size) != 0 || fcntl(fd, F_ADD_SEALS, REQUIRED_SEALS) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/* 0 if `fd` carries the seals that freeze its size; RingError otherwise (a worker must never be able to
   resize memory the supervisor maps). */
static int require_seals(int fd, const char *what) {
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0) {
        ring_error_errno(what, fd);
        return -1;
    }
    if ((seals & REQUIRED_SEALS) != REQUIRED_SEALS) {
        PyErr_Format(RingError, "%s fd %d is not sealed against resizing (seals %#x)", what, fd, seals);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- Doorbell */

typedef struct {
    PyObject_HEAD
    int event_fd;
    int page_fd;
    uint8_t *page; /* NULL once closed */
    int waiters;   /* threads inside wait() with the GIL released */
} DoorbellObject;

static PyTypeObject DoorbellType;

static inline _Atomic uint32_t *bell_sleeping(DoorbellObject *bell) {
    return (_Atomic uint32_t *)(bell->page + BELL_SLEEPING_OFF);
}

static int bell_live(DoorbellObject *bell) {
    if (bell->page == NULL) {
        PyErr_SetString(RingError, "doorbell is closed");
        return -1;
    }
    return 0;
}

static DoorbellObject *bell_new(int event_fd, int page_fd, uint8_t *page) {
    DoorbellObject *bell = PyObject_New(DoorbellObject, &DoorbellType);
    if (bell == NULL) return NULL;
    bell->event_fd = event_fd;
    bell->page_fd = page_fd;
    bell->page = page;
    bell->waiters = 0;
    return bell;
}

/* Producer half of Dekker: the caller has published (release store); fence, then claim the sleeper. */
static int bell_ring_raw(DoorbellObject *bell) {
    atomic_thread_fence(memory_order_seq_cst);
    _Atomic uint32_t *sleeping = bell_sleeping(bell);
    if (atomic_load_explicit(sleeping, memory_order_relaxed) == 0) return 0;
    if (atomic_exchange_explicit(sleeping, 0, memory_order_seq_cst) == 0) return 0;
    uint64_t one = 1;
    /* EAGAIN only when the counter is saturated: the consumer is already awake then. */
    ssize_t unused = write(bell->event_fd, &one, sizeof one);
    (void)unused;
    return 1;
}

static void bell_drain(DoorbellObject *bell) {
    uint64_t count;
    ssize_t unused = read(bell->event_fd, &count, sizeof count); /* non-blocking; EAGAIN means nothing rung */
    (void)unused;
}

static PyObject *Doorbell_create(PyObject *Py_UNUSED(cls), PyObject *Py_UNUSED(args)) {
    int event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (event_fd < 0) return ring_error_errno("cannot create doorbell eventfd", -1);
    int page_fd = create_sealed_memfd("framepool-doorbell", page_size);
    if (page_fd < 0) {
        ring_error_errno("cannot create doorbell page", page_fd);
        close(event_fd);
        return NULL;
    }
    void *page = mmap(NULL, page_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, page_fd, 0);
    if (page == MAP_FAILED) {
        ring_error_errno("cannot map doorbell page", page_fd);
        close(event_fd);
        close(page_fd);
        return NULL;
    }
    *(uint64_t *)page = BELL_MAGIC;
    PyObject *bell = (PyObject *)bell_new(event_fd, page_fd, page);
    if (bell == NULL) {
        munmap(page, page_size);
        close(event_fd);
        close(page_fd);
    }
    return bell;
}

static PyObject *Doorbell_attach(PyObject *Py_UNUSED(cls), PyObject *args, PyObject *kwargs) {
    static char *names[] = {"event_fd", "page_fd", NULL};
    int event_fd, page_fd;
    struct stat st;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "ii:attach", names, &event_fd, &page_fd)) return NULL;
    if (fstat(event_fd, &st) != 0) return ring_error_errno("bad doorbell event", event_fd);
    if (fstat(page_fd, &st) != 0) return ring_error_errno("bad doorbell page", page_fd);
    if (require_seals(page_fd, "doorbell page") < 0) return NULL;
    if ((size_t)st.st_size < page_size)
        return PyErr_Format(RingError, "corrupt doorbell: page fd %d is smaller than one page", page_fd);
    void *page = mmap(NULL, page_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, page_fd, 0);
    if (page == MAP_FAILED) return ring_error_errno("cannot map doorbell page", page_fd);
    int fl = fcntl(event_fd, F_GETFL);
    if (fl >= 0) fcntl(event_fd, F_SETFL, fl | O_NONBLOCK); /* clear() must never block */
    uint64_t magic = *(volatile uint64_t *)page;
    if (magic != BELL_MAGIC) {
        munmap(page, page_size);
        return PyErr_Format(RingError, "corrupt doorbell: bad magic %#llx", (unsigned long long)magic);
    }
    PyObject *bell = (PyObject *)bell_new(event_fd, page_fd, page);
    if (bell == NULL) munmap(page, page_size);
    return bell;
}

static PyObject *Doorbell_fileno(DoorbellObject *self, PyObject *Py_UNUSED(ignored)) {
    if (bell_live(self) < 0) return NULL;
    return PyLong_FromLong(self->event_fd);
}

static PyObject *Doorbell_ring(DoorbellObject *self, PyObject *Py_UNUSED(ignored)) {
    if (bell_live(self) < 0) return NULL;
    return PyBool_FromLong(bell_ring_raw(self));
}

static PyObject *Doorbell_prepare_sleep(DoorbellObject *self, PyObject *Py_UNUSED(ignored)) {
    if (bell_live(self) < 0) return NULL;
    atomic_store_explicit(bell_sleeping(self), 1, memory_order_seq_cst);
    Py_RETURN_NONE;
}

static PyObject *Doorbell_cancel_sleep(DoorbellObject *self, PyObject *Py_UNUSED(ignored)) {
    if (bell_live(self) < 0) return NULL;
    atomic_store_explicit(bell_sleeping(self), 0, memory_order_relaxed);
    Py_RETURN_NONE;
}

static double monotonic_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* poll() the eventfd with the GIL released; retries on EINTR after running signal handlers. */
static int bell_poll(DoorbellObject *self, double timeout) {
    double deadline = timeout < 0 ? 0 : monotonic_s() + timeout;
    struct pollfd pfd = {.fd = self->event_fd, .events = POLLIN};
    for (;;) {
        int ms = -1;
        if (timeout >= 0) {
            double left = deadline - monotonic_s();
            ms = left <= 0 ? 0 : (int)(left * 1000.0 + 0.999);
        }
        int ready, err;
        self->waiters++;
        Py_BEGIN_ALLOW_THREADS
        ready = poll(&pfd, 1, ms);
        err = errno;
        Py_END_ALLOW_THREADS
        self->waiters--;
        if (ready >= 0) return ready;
        if (err != EINTR) {
            errno = err;
            ring_error_errno("cannot wait on doorbell", self->event_fd);
            return -1;
        }
        if (PyErr_CheckSignals() < 0) return -1;
    }
}

static PyObject *Doorbell_wait(DoorbellObject *self, PyObject *arg) {
    double timeout = -1;
    if (bell_live(self) < 0) return NULL;
    if (arg != Py_None) {
        timeout = PyFloat_AsDouble(arg);
        if (timeout == -1 && PyErr_Occurred()) return NULL;
        if (timeout < 0) timeout = 0;
    }
    int ready = bell_poll(self, timeout);
    if (ready < 0) return NULL;
    bell_drain(self);
    atomic_store_explicit(bell_sleeping(self), 0, memory_order_relaxed);
    return PyBool_FromLong(ready > 0);
}

static PyObject *Doorbell_clear(DoorbellObject *self, PyObject *Py_UNUSED(ignored)) {
    if (bell_live(self) < 0) return NULL;
    bell_drain(self);
    atomic_store_explicit(bell_sleeping(self), 0, memory_order_relaxed);
    Py_RETURN_NONE;
}

static void bell_unmap(DoorbellObject *self) {
    if (self->page == NULL) return;
    munmap(self->page, page_size);
    self->page = NULL;
    close(self->event_fd);
    close(self->page_fd);
}

static PyObject *Doorbell_close(DoorbellObject *self, PyObject *Py_UNUSED(ignored)) {
    if (self->waiters > 0) {
        PyErr_SetString(RingError, "cannot close the doorbell while another thread waits on it");
        return NULL;
    }
    bell_unmap(self);
    Py_RETURN_NONE;
}

static void Doorbell_dealloc(DoorbellObject *self) {
    bell_unmap(self);
    PyObject_Free(self);
}

static PyMethodDef Doorbell_methods[] = {
    {"create", (PyCFunction)Doorbell_create, METH_NOARGS | METH_STATIC, "A new eventfd and sleeping-flag page."},
    {"attach", (PyCFunction)(void (*)(void))Doorbell_attach, METH_VARARGS | METH_KEYWORDS | METH_STATIC,
     "Wrap received fds (takes ownership on success)."},
    {"fileno", (PyCFunction)Doorbell_fileno, METH_NOARGS, "The eventfd, for loop.add_reader / poll."},
    {"ring", (PyCFunction)Doorbell_ring, METH_NOARGS, "Wake the consumer if it sleeps; True if the eventfd was written."},
    {"prepare_sleep", (PyCFunction)Doorbell_prepare_sleep, METH_NOARGS, "sleeping=1; then re-check the rings."},
    {"cancel_sleep", (PyCFunction)Doorbell_cancel_sleep, METH_NOARGS, "Found work after prepare_sleep."},
    {"wait", (PyCFunction)Doorbell_wait, METH_O, "Block (GIL released) until rung or timeout; True if rung."},
    {"clear", (PyCFunction)Doorbell_clear, METH_NOARGS, "Reset the eventfd after add_reader fired."},
    {"close", (PyCFunction)Doorbell_close, METH_NOARGS, "Unmap and close both fds."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Doorbell_members[] = {
    {"event_fd", T_INT, offsetof(DoorbellObject, event_fd), READONLY, "the eventfd"},
    {"page_fd", T_INT, offsetof(DoorbellObject, page_fd), READONLY, "the memfd of the sleeping-flag page"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject DoorbellType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "framepool._ring.Doorbell",
    .tp_basicsize = sizeof(DoorbellObject),
    .tp_dealloc = (destructor)Doorbell_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "eventfd + shared sleeping flag: the producer rings only when the consumer sleeps.",
    .tp_methods = Doorbell_methods,
    .tp_members = Doorbell_members,
};

/* ------------------------------------------------------------- FrameHeader */

typedef struct {
    PyObject_HEAD
    unsigned long long seq;
    long long ts_us;
    unsigned int kind, fmt, flags, a, b, c;
    unsigned long long length;
} FrameHeaderObject;

static PyTypeObject FrameHeaderType;

#define HEADER_MEMBER(name, type, field) {name, type, offsetof(FrameHeaderObject, field), READONLY, NULL}
static PyMemberDef FrameHeader_members[] = {
    HEADER_MEMBER("seq", T_ULONGLONG, seq),
    HEADER_MEMBER("ts_us", T_LONGLONG, ts_us),
    HEADER_MEMBER("kind", T_UINT, kind),
    HEADER_MEMBER("fmt", T_UINT, fmt),
    HEADER_MEMBER("flags", T_UINT, flags),
    HEADER_MEMBER("a", T_UINT, a),
    HEADER_MEMBER("b", T_UINT, b),
    HEADER_MEMBER("c", T_UINT, c),
    HEADER_MEMBER("length", T_ULONGLONG, length),
    {NULL, 0, 0, 0, NULL},
};

static PyObject *FrameHeader_repr(FrameHeaderObject *self) {
    return PyUnicode_FromFormat(
        "FrameHeader(seq=%llu, ts_us=%lld, kind=%u, fmt=%u, flags=%u, a=%u, b=%u, c=%u, length=%llu)",
        self->seq, self->ts_us, self->kind, self->fmt, self->flags, self->a, self->b, self->c, self->length);
}

static PyTypeObject FrameHeaderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "framepool._ring.FrameHeader",
    .tp_basicsize = sizeof(FrameHeaderObject),
    .tp_dealloc = (destructor)PyObject_Free,
    .tp_repr = (reprfunc)FrameHeader_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The raw descriptor of one slot; framepool.ipc.slots says what kind, fmt, a, b and c mean.",
    .tp_members = FrameHeader_members,
};

/* --------------------------------------------------------------- FrameRing */

typedef struct {
    PyObject_HEAD
    int fd;
    unsigned int slot_count;
    unsigned long long slot_size;
    unsigned int policy;
    uint8_t *base; /* NULL once closed */
    size_t map_size;
    ring_control *ctrl;
    frame_desc *desc;
    uint8_t *payload;
    size_t stride;
    DoorbellObject *data_bell;  /* rung after each write */
    DoorbellObject *space_bell; /* rung after release() when the producer waits for space */
    Py_ssize_t exports;         /* live memoryviews of a slot */
    int copying;                /* a write() copies with the GIL released */
    FrameHeaderObject *peeked;  /* the frame handed out by peek(), until release() */
    uint64_t peeked_index;
    uint32_t peeked_slot;
} FrameRingObject;

static PyTypeObject FrameRingType;

static int ring_live(FrameRingObject *self) {
    if (self->base == NULL) {
        PyErr_SetString(RingError, "ring is closed");
        return -1;
    }
    return 0;
}

static FrameRingObject *ring_new(int fd, uint8_t *base, size_t map_size, const ring_control *hdr) {
    FrameRingObject *self = PyObject_New(FrameRingObject, &FrameRingType);
    if (self == NULL) return NULL;
    self->fd = fd;
    self->slot_count = hdr->slot_count;
    self->slot_size = hdr->slot_size;
    self->policy = hdr->policy;
    self->base = base;
    self->map_size = map_size;
    self->ctrl = (ring_control *)base;
    self->desc = (frame_desc *)(base + page_size);
    self->payload = base + payload_offset(hdr->slot_count);
    self->stride = round_up(hdr->slot_size, page_size);
    self->data_bell = self->space_bell = NULL;
    self->exports = 0;
    self->copying = 0;
    self->peeked = NULL;
    self->peeked_index = 0;
    self->peeked_slot = 0;
    return self;
}

static size_t ring_total_size(uint32_t slot_count, uint64_t slot_size) {
    return payload_offset(slot_count) + (size_t)slot_count * round_up(slot_size, page_size);
}

static PyObject *FrameRing_create(PyObject *Py_UNUSED(cls), PyObject *args, PyObject *kwargs) {
    static char *names[] = {"slot_count", "slot_size", "policy", NULL};
    long long slot_count, slot_size;
    int policy;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "LLi:create", names, &slot_count, &slot_size, &policy))
        return NULL;
    if (slot_count < 1 || slot_count > MAX_SLOT_COUNT)
        return PyErr_Format(RingError, "slot_count must be between 1 and %u, got %lld", MAX_SLOT_COUNT, slot_count);
    if (slot_size < 1 || (unsigned long long)slot_size > MAX_SLOT_SIZE)
        return PyErr_Format(RingError, "slot_size must be between 1 and %llu, got %lld", MAX_SLOT_SIZE, slot_size);
    if (policy != POLICY_BLOCK && policy != POLICY_DROP_NEWEST && policy != POLICY_LATEST)
        return PyErr_Format(RingError, "unknown ring policy %d", policy);
    size_t total = ring_total_size((uint32_t)slot_count, (uint64_t)slot_size);
    int fd = create_sealed_memfd("framepool-ring", total);
    if (fd < 0) return ring_error_errno("cannot create ring memfd", fd);
    uint8_t *base = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (base == MAP_FAILED) {
        ring_error_errno("cannot map ring", fd);
        close(fd);
        return NULL;
    }
    for (size_t off = 0; off < total; off += page_size) base[off] = 0; /* pre-fault: none on the hot path */
    ring_control *ctrl = (ring_control *)base;
    ctrl->magic = RING_MAGIC;
    ctrl->version = RING_VERSION;
    ctrl->slot_count = (uint32_t)slot_count;
    ctrl->slot_size = (uint64_t)slot_size;
    ctrl->policy = (uint32_t)policy;
    ctrl->checksum = header_checksum(ctrl);
    PyObject *ring = (PyObject *)ring_new(fd, base, total, ctrl);
    if (ring == NULL) {
        munmap(base, total);
        close(fd);
    }
    return ring;
}

static int validate_header(const ring_control *hdr, size_t size) {
    if (hdr->magic != RING_MAGIC) {
        PyErr_Format(RingError, "corrupt ring header: bad magic %#llx", (unsigned long long)hdr->magic);
        return -1;
    }
    if (hdr->version != RING_VERSION) {
        PyErr_Format(RingError, "corrupt ring header: version %u, this build speaks %u", hdr->version, RING_VERSION);
        return -1;
    }
    if (hdr->checksum != header_checksum(hdr)) {
        PyErr_SetString(RingError, "corrupt ring header: checksum mismatch");
        return -1;
    }
    if (hdr->slot_count < 1 || hdr->slot_count > MAX_SLOT_COUNT || hdr->slot_size < 1 || hdr->slot_size > MAX_SLOT_SIZE) {
        PyErr_Format(RingError, "corrupt ring header: geometry %u x %llu", hdr->slot_count,
                     (unsigned long long)hdr->slot_size);
        return -1;
    }
    if (hdr->policy > POLICY_LATEST) {
        PyErr_Format(RingError, "corrupt ring header: unknown policy %u", hdr->policy);
        return -1;
    }
    if (ring_total_size(hdr->slot_count, hdr->slot_size) > size) {
        PyErr_Format(RingError, "corrupt ring header: %u slots of %llu bytes need more than %zu bytes",
                     hdr->slot_count, (unsigned long long)hdr->slot_size, size);
        return -1;
    }
    return 0;
}

static PyObject *FrameRing_attach(PyObject *Py_UNUSED(cls), PyObject *args, PyObject *kwargs) {
    static char *names[] = {"fd", NULL};
    int fd;
    struct stat st;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "i:attach", names, &fd)) return NULL;
    if (fstat(fd, &st) != 0) return ring_error_errno("bad ring", fd);
    if (require_seals(fd, "ring") < 0) return NULL;
    size_t size = (size_t)st.st_size;
    if (size < page_size)
        return PyErr_Format(RingError, "corrupt ring header: fd %d holds %zu bytes, less than a control page", fd, size);
    uint8_t *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (base == MAP_FAILED) return ring_error_errno("cannot map ring", fd);
    ring_control hdr; /* one read of the header: the peer cannot change it between check and use */
    memcpy(&hdr, base, offsetof(ring_control, head));
    if (validate_header(&hdr, size) < 0) {
        munmap(base, size);
        return NULL;
    }
    PyObject *ring = (PyObject *)ring_new(fd, base, size, &hdr);
    if (ring == NULL) munmap(base, size);
    return ring;
}

static int bell_arg(PyObject *arg, DoorbellObject **out) {
    if (arg == Py_None) {
        *out = NULL;
        return 0;
    }
    if (!PyObject_TypeCheck(arg, &DoorbellType)) {
        PyErr_Format(PyExc_TypeError, "expected a Doorbell or None, got %.100s", Py_TYPE(arg)->tp_name);
        return -1;
    }
    *out = (DoorbellObject *)arg;
    return 0;
}

static PyObject *FrameRing_bind(FrameRingObject *self, PyObject *args) {
    PyObject *data_arg, *space_arg;
    DoorbellObject *data_bell, *space_bell;
    if (!PyArg_ParseTuple(args, "OO:bind", &data_arg, &space_arg)) return NULL;
    if (ring_live(self) < 0 || bell_arg(data_arg, &data_bell) < 0 || bell_arg(space_arg, &space_bell) < 0)
        return NULL;
    Py_XINCREF(data_bell);
    Py_XINCREF(space_bell);
    Py_XSETREF(self->data_bell, data_bell);
    Py_XSETREF(self->space_bell, space_bell);
    Py_RETURN_NONE;
}

static int as_u32(PyObject *obj, uint32_t *out) {
    unsigned long v = PyLong_AsUnsignedLong(obj);
    if (v == (unsigned long)-1 && PyErr_Occurred()) return -1;
    if (v > UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "frame header field does not fit in 32 bits");
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

/* The ring looked full: apply the policy. 1 if space appeared meanwhile (BLOCK only), else 0. */
static int room_after_full(FrameRingObject *self, uint64_t head) {
    ring_control *ctrl = self->ctrl;
    if (self->policy == POLICY_BLOCK) {
        atomic_store_explicit(&ctrl->producer_waiting, 1, memory_order_seq_cst);
        /* Dekker with release(): either it sees our flag or we see its tail. */
        uint64_t tail = atomic_load_explicit(&ctrl->tail, memory_order_seq_cst);
        if (head - tail < self->slot_count) {
            atomic_store_explicit(&ctrl->producer_waiting, 0, memory_order_relaxed);
            return 1;
        }
        return 0;
    }
    atomic_store_explicit(&ctrl->dropped, atomic_load_explicit(&ctrl->dropped, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    if (self->policy == POLICY_DROP_NEWEST) atomic_store_explicit(&ctrl->gap_pending, 1, memory_order_relaxed);
    return 0;
}

/* The payload slot for the frame at `head`. A consumer that keeps up (the normal state of a realtime
 * stream) has released everything before the next frame: then the slot written last is rewritten, so
 * one slot's memory stays in cache instead of the producer cycling through all of them (measured in
 * benchmarks/ring.py, paced mode). Otherwise the slot after it: the pending frames occupy consecutive
 * slots ending at last_slot (the run restarts only when nothing is pending), so that one is free
 * whenever the ring is not full. A stale `tail` only ever says "not empty", which is safe. */
static uint64_t next_slot(FrameRingObject *self, uint64_t head, uint64_t tail) {
    uint64_t last = atomic_load_explicit(&self->ctrl->last_slot, memory_order_relaxed) % self->slot_count;
    return head == tail ? last : (last + 1) % self->slot_count;
}

static PyObject *ring_publish(FrameRingObject *self, const Py_buffer *data, uint64_t head, uint64_t tail,
                              frame_desc *fields) {
    ring_control *ctrl = self->ctrl;
    uint64_t slot = next_slot(self, head, tail);
    uint8_t *dst = self->payload + slot * self->stride;
    if (data->len >= GIL_FREE_COPY) {
        self->copying = 1;
        Py_BEGIN_ALLOW_THREADS
        memcpy(dst, data->buf, (size_t)data->len);
        Py_END_ALLOW_THREADS
        self->copying = 0;
    } else {
        memcpy(dst, data->buf, (size_t)data->len);
    }
    if (atomic_load_explicit(&ctrl->gap_pending, memory_order_relaxed)) {
        fields->flags |= FLAG_GAP;
        atomic_store_explicit(&ctrl->gap_pending, 0, memory_order_relaxed);
    }
    fields->length = (uint64_t)data->len;
    fields->slot = (uint32_t)slot;
    memcpy(&self->desc[head % self->slot_count], fields, sizeof *fields);
    atomic_store_explicit(&ctrl->last_slot, slot, memory_order_relaxed);
    atomic_store_explicit(&ctrl->written, atomic_load_explicit(&ctrl->written, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_store_explicit(&ctrl->head, head + 1, memory_order_release);
    if (self->data_bell != NULL && self->data_bell->page != NULL) bell_ring_raw(self->data_bell);
    Py_RETURN_TRUE;
}

static PyObject *FrameRing_write(FrameRingObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 9)
        return PyErr_Format(PyExc_TypeError, "write() takes 9 positional arguments (%zd given)", nargs);
    if (ring_live(self) < 0) return NULL;
    if (self->copying) {
        PyErr_SetString(RingError, "write() called concurrently: a ring has a single producer");
        return NULL;
    }
    frame_desc fields = {0};
    fields.seq = PyLong_AsUnsignedLongLong(args[1]);
    if (fields.seq == (uint64_t)-1 && PyErr_Occurred()) return NULL;
    fields.ts_us = PyLong_AsLongLong(args[2]);
    if (fields.ts_us == -1 && PyErr_Occurred()) return NULL;
    if (as_u32(args[3], &fields.kind) < 0 || as_u32(args[4], &fields.fmt) < 0 || as_u32(args[5], &fields.flags) < 0 ||
        as_u32(args[6], &fields.a) < 0 || as_u32(args[7], &fields.b) < 0 || as_u32(args[8], &fields.c) < 0)
        return NULL;
    Py_buffer data;
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *result;
    uint64_t head = atomic_load_explicit(&self->ctrl->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&self->ctrl->tail, memory_order_acquire);
    if ((unsigned long long)data.len > self->slot_size) {
        result = PyErr_Format(RingError, "frame of %zd bytes exceeds the ring's slot size %llu", data.len,
                              self->slot_size);
    } else if (head - tail >= self->slot_count && !room_after_full(self, head)) {
        result = Py_NewRef(Py_False);
    } else {
        result = ring_publish(self, &data, head, tail, &fields);
    }
    PyBuffer_Release(&data);
    return result;
}

static PyObject *FrameRing_free_slots(FrameRingObject *self, PyObject *Py_UNUSED(ignored)) {
    if (ring_live(self) < 0) return NULL;
    uint64_t tail = atomic_load_explicit(&self->ctrl->tail, memory_order_acquire);
    uint64_t head = atomic_load_explicit(&self->ctrl->head, memory_order_acquire);
    return PyLong_FromLongLong((long long)self->slot_count - (long long)(head - tail));
}

static PyObject *FrameRing_pending(FrameRingObject *self, PyObject *Py_UNUSED(ignored)) {
    if (ring_live(self) < 0) return NULL;
    uint64_t tail = atomic_load_explicit(&self->ctrl->tail, memory_order_acquire);
    uint64_t head = atomic_load_explicit(&self->ctrl->head, memory_order_acquire);
    /* Clamped to 0..slot_count: the other side writes one of the two counters and may lie. */
    uint64_t pending = tail > head ? 0 : head - tail;
    return PyLong_FromUnsignedLongLong(pending > self->slot_count ? self->slot_count : pending);
}

static PyObject *peek_result(FrameRingObject *self) {
    PyObject *view = PyMemoryView_FromObject((PyObject *)self); /* exports the peeked slot, counted */
    if (view == NULL) return NULL;
    PyObject *pair = PyTuple_Pack(2, (PyObject *)self->peeked, view);
    Py_DECREF(view);
    return pair;
}

static PyObject *FrameRing_peek(FrameRingObject *self, PyObject *Py_UNUSED(ignored)) {
    if (ring_live(self) < 0) return NULL;
    if (self->peeked != NULL) return peek_result(self); /* the same frame until release() */
    ring_control *ctrl = self->ctrl;
    uint64_t tail = atomic_load_explicit(&ctrl->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&ctrl->head, memory_order_acquire);
    if (head < tail || head - tail > self->slot_count)
        return PyErr_Format(RingError, "corrupt ring: head %llu and tail %llu are inconsistent for %u slots",
                            (unsigned long long)head, (unsigned long long)tail, self->slot_count);
    if (head == tail) Py_RETURN_NONE;
    if (self->policy == POLICY_LATEST && head - tail > 1) {
        atomic_store_explicit(&ctrl->skipped,
                              atomic_load_explicit(&ctrl->skipped, memory_order_relaxed) + (head - 1 - tail),
                              memory_order_relaxed);
        tail = head - 1;
        atomic_store_explicit(&ctrl->tail, tail, memory_order_release);
    }
    uint64_t index = tail % self->slot_count;
    frame_desc d;
    memcpy(&d, &self->desc[index], sizeof d); /* read once: validated and used from this copy */
    if (d.length > self->slot_size)
        return PyErr_Format(RingError, "corrupt ring: slot %llu descriptor claims %llu bytes, the slot size is %llu",
                            (unsigned long long)index, (unsigned long long)d.length, self->slot_size);
    if (d.slot >= self->slot_count)
        return PyErr_Format(RingError, "corrupt ring: slot %llu descriptor names payload slot %u of %u",
                            (unsigned long long)index, d.slot, self->slot_count);
    FrameHeaderObject *header = PyObject_New(FrameHeaderObject, &FrameHeaderType);
    if (header == NULL) return NULL;
    header->seq = d.seq;
    header->ts_us = d.ts_us;
    header->kind = d.kind;
    header->fmt = d.fmt;
    header->flags = d.flags;
    header->a = d.a;
    header->b = d.b;
    header->c = d.c;
    header->length = d.length;
    self->peeked = header;
    self->peeked_index = tail;
    self->peeked_slot = d.slot;
    return peek_result(self);
}

static PyObject *FrameRing_release(FrameRingObject *self, PyObject *Py_UNUSED(ignored)) {
    if (ring_live(self) < 0) return NULL;
    if (self->peeked == NULL) {
        PyErr_SetString(RingError, "release() without a peeked frame");
        return NULL;
    }
    ring_control *ctrl = self->ctrl;
    Py_CLEAR(self->peeked);
    atomic_store_explicit(&ctrl->read, atomic_load_explicit(&ctrl->read, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_store_explicit(&ctrl->tail, self->peeked_index + 1, memory_order_release);
    atomic_thread_fence(memory_order_seq_cst); /* Dekker with write(): our tail before its flag */
    if (atomic_load_explicit(&ctrl->producer_waiting, memory_order_relaxed) &&
        atomic_exchange_explicit(&ctrl->producer_waiting, 0, memory_order_seq_cst) && self->space_bell != NULL &&
        self->space_bell->page != NULL)
        bell_ring_raw(self->space_bell);
    Py_RETURN_NONE;
}

static PyObject *FrameRing_stats(FrameRingObject *self, PyObject *Py_UNUSED(ignored)) {
    if (ring_live(self) < 0) return NULL;
    ring_control *ctrl = self->ctrl;
    return Py_BuildValue("{s:K,s:K,s:K,s:K}", "written",
                         (unsigned long long)atomic_load_explicit(&ctrl->written, memory_order_relaxed), "dropped",
                         (unsigned long long)atomic_load_explicit(&ctrl->dropped, memory_order_relaxed), "skipped",
                         (unsigned long long)atomic_load_explicit(&ctrl->skipped, memory_order_relaxed), "read",
                         (unsigned long long)atomic_load_explicit(&ctrl->read, memory_order_relaxed));
}

static void ring_unmap(FrameRingObject *self) {
    if (self->base == NULL) return;
    munmap(self->base, self->map_size);
    self->base = NULL;
    close(self->fd);
}

static PyObject *FrameRing_close(FrameRingObject *self, PyObject *Py_UNUSED(ignored)) {
    if (self->base == NULL) Py_RETURN_NONE;
    if (self->copying) {
        PyErr_SetString(RingError, "cannot close the ring while another thread writes to it");
        return NULL;
    }
    if (self->exports > 0)
        return PyErr_Format(RingError,
                            "cannot close the ring while %zd frame views are exported; release them first",
                            self->exports);
    ring_unmap(self);
    Py_CLEAR(self->peeked);
    Py_CLEAR(self->data_bell);
    Py_CLEAR(self->space_bell);
    Py_RETURN_NONE;
}

static void FrameRing_dealloc(FrameRingObject *self) {
    ring_unmap(self); /* no view can be alive: each holds a reference to this object */
    Py_CLEAR(self->peeked);
    Py_CLEAR(self->data_bell);
    Py_CLEAR(self->space_bell);
    PyObject_Free(self);
}

/* The buffer is the payload of the peeked frame; peek() hands it out as a memoryview. */
static int FrameRing_getbuffer(FrameRingObject *self, Py_buffer *view, int flags) {
    if (self->base == NULL || self->peeked == NULL) {
        PyErr_SetString(PyExc_BufferError, "no peeked frame to export");
        return -1;
    }
    uint8_t *buf = self->payload + (size_t)self->peeked_slot * self->stride;
    if (PyBuffer_FillInfo(view, (PyObject *)self, buf, (Py_ssize_t)self->peeked->length, 0, flags) < 0) return -1;
    self->exports++;
    return 0;
}

static void FrameRing_releasebuffer(FrameRingObject *self, Py_buffer *Py_UNUSED(view)) { self->exports--; }

static PyBufferProcs FrameRing_as_buffer = {
    .bf_getbuffer = (getbufferproc)FrameRing_getbuffer,
    .bf_releasebuffer = (releasebufferproc)FrameRing_releasebuffer,
};

static PyMethodDef FrameRing_methods[] = {
    {"create", (PyCFunction)(void (*)(void))FrameRing_create, METH_VARARGS | METH_KEYWORDS | METH_STATIC,
     "create(slot_count, slot_size, policy): a new pre-faulted ring in a memfd."},
    {"attach", (PyCFunction)(void (*)(void))FrameRing_attach, METH_VARARGS | METH_KEYWORDS | METH_STATIC,
     "attach(fd): map an existing ring (takes ownership of fd on success); validates the header."},
    {"bind", (PyCFunction)FrameRing_bind, METH_VARARGS, "bind(data_bell, space_bell)"},
    {"write", (PyCFunction)(void (*)(void))FrameRing_write, METH_FASTCALL,
     "write(data, seq, ts_us, kind, fmt, flags, a, b, c, /) -> bool: False when full."},
    {"free_slots", (PyCFunction)FrameRing_free_slots, METH_NOARGS, NULL},
    {"peek", (PyCFunction)FrameRing_peek, METH_NOARGS,
     "(header, memoryview) of the next frame, or None; the view is valid until release()."},
    {"release", (PyCFunction)FrameRing_release, METH_NOARGS, "Free the slot returned by the last peek."},
    {"pending", (PyCFunction)FrameRing_pending, METH_NOARGS, "Frames written, not yet released (0..slot_count)."},
    {"stats", (PyCFunction)FrameRing_stats, METH_NOARGS, "{written, dropped, skipped, read}, shared by both sides."},
    {"close", (PyCFunction)FrameRing_close, METH_NOARGS, "Unmap and close; refused while frame views exist."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef FrameRing_members[] = {
    {"fd", T_INT, offsetof(FrameRingObject, fd), READONLY, "the ring's memfd"},
    {"slot_count", T_UINT, offsetof(FrameRingObject, slot_count), READONLY, NULL},
    {"slot_size", T_ULONGLONG, offsetof(FrameRingObject, slot_size), READONLY, NULL},
    {"policy", T_UINT, offsetof(FrameRingObject, policy), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject FrameRingType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "framepool._ring.FrameRing",
    .tp_basicsize = sizeof(FrameRingObject),
    .tp_dealloc = (destructor)FrameRing_dealloc,
    .tp_as_buffer = &FrameRing_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Single-producer single-consumer ring of fixed-size frame slots in a memfd.",
    .tp_methods = FrameRing_methods,
    .tp_members = FrameRing_members,
};

/* ------------------------------------------------------------------ module */

static struct PyModuleDef ring_module = {
    PyModuleDef_HEAD_INIT, "framepool._ring", "Shared-memory frame ring (see framepool.ring).", -1, NULL,
    NULL, NULL, NULL, NULL,
};

static int add_constants(PyObject *m) {
    static const struct {
        const char *name;
        long value;
    } constants[] = {
        {"FLAG_GAP", FLAG_GAP},
        {"FLAG_EOS", FLAG_EOS},
        {"POLICY_BLOCK", POLICY_BLOCK},
        {"POLICY_DROP_NEWEST", POLICY_DROP_NEWEST},
        {"POLICY_LATEST", POLICY_LATEST},
    };
    for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++)
        if (PyModule_AddIntConstant(m, constants[i].name, constants[i].value) < 0) return -1;
    return 0;
}

PyMODINIT_FUNC PyInit__ring(void) {
    page_size = (size_t)sysconf(_SC_PAGESIZE);
    if (PyType_Ready(&DoorbellType) < 0 || PyType_Ready(&FrameHeaderType) < 0 || PyType_Ready(&FrameRingType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&ring_module);
    if (m == NULL) return NULL;
    RingError = PyErr_NewExceptionWithDoc(
        "framepool._ring.RingError",
        "Every frame ring failure: oversize frame, corrupt or mismatched header, bad fd, closed ring.",
        PyExc_Exception, NULL);
    if (RingError == NULL || PyModule_AddObjectRef(m, "RingError", RingError) < 0 ||
        PyModule_AddObjectRef(m, "Doorbell", (PyObject *)&DoorbellType) < 0 ||
        PyModule_AddObjectRef(m, "FrameHeader", (PyObject *)&FrameHeaderType) < 0 ||
        PyModule_AddObjectRef(m, "FrameRing", (PyObject *)&FrameRingType) < 0 || add_constants(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
