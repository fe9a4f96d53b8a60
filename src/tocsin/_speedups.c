/* tocsin._speedups: the compiled send path (optional).
 *
 * The pure-Python module is the reference and the fallback: this file only
 * makes Signal.send() faster, never different. tocsin/_compiled.py decides
 * whether it is used; the whole test suite runs on both paths (dev.py test).
 *
 * What it provides:
 *
 * SendMethod   What Signal.send is when compiled: a method descriptor
 *              (Py_TPFLAGS_METHOD_DESCRIPTOR, so that `signal.send(...)`
 *              binds nothing) wrapping the pure-Python Signal.send. Called
 *              with Django's convention, send(sender, **named), it reads the
 *              signal's cached plan (the attributes the pure send reads):
 *              - nobody listening: returns [] without entering Python at all;
 *              - only sync receivers: calls them with vectorcall, passing the
 *                caller's own keyword names with `signal` and `sender` in
 *                front, so no dictionary of keyword arguments is built for
 *                the send (each receiver with **kwargs still builds its own);
 *              - anything else (async or on-commit receivers, hooks, a plan
 *                not built yet, odd arguments): calls the pure Signal.send,
 *                which does everything, errors included.
 *              Receivers are called from inside a Python frame of
 *              dispatcher.py named `send` (the "frame" function), so that a
 *              receiver is one frame below the line that sent, as in Django
 *              and in the pure path: Django's own receivers compute warnings'
 *              stacklevel from that.
 * WouldSendMethod  What Signal.would_send is when compiled: the same
 *              descriptor around the pure would_send(), answering from the
 *              cached plan without entering Python (the SQLAlchemy
 *              integration asks it several times per row); anything it does
 *              not recognise goes to the pure method.
 * MethodDeref  The deref of a weakly connected bound method (tocsin._refs):
 *              two weak references, the bound method rebuilt when both live.
 * call_each    asend()'s first step (tocsin._async): call every async
 *              receiver with signal=, sender= and the send's keyword
 *              arguments, from one tuple of names built once per send.
 *
 * It relies on the GIL (CPython 3.11-3.13, not the free-threaded build).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>

/* Bumped when what dispatcher.py and _refs.py expect from this module
 * changes: a stale build is then ignored rather than misused. */
#define API_VERSION 3

static PyObject *str_any_plan;  /* "_any_plan" */
static PyObject *str_plans;     /* "_plans" */
static PyObject *str_plan;      /* "_plan" */
static PyObject *signal_sender; /* ("signal", "sender") */

/* -- the keyword names receivers are called with --------------------------
 *
 * ("signal", "sender", *the caller's names). A caller's names are a constant
 * of its code object, the same tuple on every call from that line, so a small
 * cache keyed by the tuple's identity builds each one once. An entry holds
 * its key, so the address cannot be reused by another tuple while cached.
 */
#define NAMES_CACHE_SIZE 64

static PyObject *names_keys[NAMES_CACHE_SIZE];
static PyObject *names_values[NAMES_CACHE_SIZE];

/* New reference to the extended names for *kwnames* (NULL: none given). */
static PyObject *
receiver_names(PyObject *kwnames)
{
    if (kwnames == NULL) {
        return Py_NewRef(signal_sender);
    }
    size_t slot = ((uintptr_t)kwnames >> 4) % NAMES_CACHE_SIZE;
    if (names_keys[slot] == kwnames) {
        return Py_NewRef(names_values[slot]);
    }
    Py_ssize_t n = PyTuple_GET_SIZE(kwnames);
    PyObject *names = PyTuple_New(n + 2);
    if (names == NULL) {
        return NULL;
    }
    PyTuple_SET_ITEM(names, 0, Py_NewRef(PyTuple_GET_ITEM(signal_sender, 0)));
    PyTuple_SET_ITEM(names, 1, Py_NewRef(PyTuple_GET_ITEM(signal_sender, 1)));
    for (Py_ssize_t i = 0; i < n; i++) {
        PyTuple_SET_ITEM(names, i + 2, Py_NewRef(PyTuple_GET_ITEM(kwnames, i)));
    }
    PyObject *old_key = names_keys[slot];
    PyObject *old_value = names_values[slot];
    names_keys[slot] = Py_NewRef(kwnames);
    names_values[slot] = Py_NewRef(names);
    /* Tuples of strings: freeing them runs no Python code. */
    Py_XDECREF(old_key);
    Py_XDECREF(old_value);
    return names;
}

/* Whether the caller passed `signal` or `sender` by keyword: the pure send
 * then raises (or, for `signal`, lets each call raise) Python's own errors. */
static int
names_reserved(PyObject *kwnames)
{
    Py_ssize_t n = PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        /* Both are six characters long, and usually interned. */
        if (name == PyTuple_GET_ITEM(signal_sender, 0) ||
            name == PyTuple_GET_ITEM(signal_sender, 1)) {
            return 1;
        }
        if (PyUnicode_GET_LENGTH(name) == 6 &&
            (PyUnicode_CompareWithASCIIString(name, "signal") == 0 ||
             PyUnicode_CompareWithASCIIString(name, "sender") == 0)) {
            return 1;
        }
    }
    return 0;
}

/* -- derefs ------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *self_ref;
    PyObject *func_ref;
    vectorcallfunc vectorcall;
} MethodDeref;

static PyTypeObject MethodDeref_Type;

/* New reference to what a weak reference points at, or to None. */
static PyObject *
referent(PyObject *ref)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *obj;
    if (PyWeakref_GetRef(ref, &obj) < 0) {
        return NULL;
    }
    return obj != NULL ? obj : Py_NewRef(Py_None);
#else
    return Py_NewRef(PyWeakref_GET_OBJECT(ref));
#endif
}

static PyObject *
method_deref_get(MethodDeref *self)
{
    PyObject *obj = referent(self->self_ref);
    if (obj == NULL || obj == Py_None) {
        return obj;
    }
    PyObject *func = referent(self->func_ref);
    if (func == NULL || func == Py_None) {
        Py_DECREF(obj);
        return func;
    }
    PyObject *method = PyMethod_New(func, obj);
    Py_DECREF(func);
    Py_DECREF(obj);
    return method;
}

static PyObject *
method_deref_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (PyVectorcall_NARGS(nargsf) != 0 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "MethodDeref() takes no arguments");
        return NULL;
    }
    return method_deref_get((MethodDeref *)op);
}

static PyObject *
method_deref_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *self_ref, *func_ref;
    static char *keywords[] = {"self_ref", "func_ref", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!:MethodDeref", keywords,
                                     &_PyWeakref_RefType, &self_ref, &_PyWeakref_RefType,
                                     &func_ref)) {
        return NULL;
    }
    MethodDeref *self = (MethodDeref *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->self_ref = Py_NewRef(self_ref);
    self->func_ref = Py_NewRef(func_ref);
    self->vectorcall = method_deref_vectorcall;
    return (PyObject *)self;
}

static void
method_deref_dealloc(MethodDeref *self)
{
    Py_XDECREF(self->self_ref);
    Py_XDECREF(self->func_ref);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject MethodDeref_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tocsin._speedups.MethodDeref",
    .tp_doc = "MethodDeref(self_ref, func_ref)\n--\n\n"
              "The bound method of two weak references' referents, or None if "
              "either has died.",
    .tp_basicsize = sizeof(MethodDeref),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_IMMUTABLETYPE,
    .tp_new = method_deref_new,
    .tp_dealloc = (destructor)method_deref_dealloc,
    .tp_vectorcall_offset = offsetof(MethodDeref, vectorcall),
    .tp_call = PyVectorcall_Call,
};

/* New reference to the receiver behind a deref, or to None if it died. */
static PyObject *
deref(PyObject *d)
{
    if (PyWeakref_CheckRefExact(d)) {
        return referent(d);
    }
    if (Py_IS_TYPE(d, &MethodDeref_Type)) {
        return method_deref_get((MethodDeref *)d);
    }
    return PyObject_CallNoArgs(d);
}

/* -- one send's receiver calls -----------------------------------------------
 *
 * A Call is what the frame function calls: `def send(call): return call()`.
 * It borrows everything from the C send that made it, and is only valid
 * while that send runs (a receiver could find it in the frame's locals).
 */
typedef struct {
    PyObject_HEAD
    PyObject *signal;
    PyObject *sender;
    PyObject *derefs;              /* the plan's tuple of sync derefs */
    PyObject *const *values;       /* the caller's keyword values */
    PyObject *names;               /* ("signal", "sender", *keyword names) */
    int live;
    vectorcallfunc vectorcall;
} Call;

static PyTypeObject Call_Type;

#define SMALL 8

static PyObject *
call_receivers(Call *call)
{
    PyObject *derefs = call->derefs;
    Py_ssize_t n = PyTuple_GET_SIZE(derefs);
    Py_ssize_t nnames = PyTuple_GET_SIZE(call->names);
    PyObject *receivers_small[SMALL];
    PyObject *stack_small[SMALL + 3];
    PyObject **receivers = receivers_small;
    PyObject **stack = stack_small;
    PyObject *responses = NULL;
    Py_ssize_t made = 0, live = 0;

    if (n > SMALL) {
        receivers = PyMem_Malloc(n * sizeof(PyObject *));
    }
    if (nnames + 1 > SMALL + 3) {
        stack = PyMem_Malloc((nnames + 1) * sizeof(PyObject *));
    }
    if (receivers == NULL || stack == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    /* Every receiver is dereferenced before any is called, so that what a
     * receiver does to the others cannot change this send. */
    for (; made < n; made++) {
        PyObject *receiver = deref(PyTuple_GET_ITEM(derefs, made));
        if (receiver == NULL) {
            goto done;
        }
        receivers[made] = receiver;
        live += receiver != Py_None;
    }
    responses = PyList_New(live);
    if (responses == NULL) {
        goto done;
    }
    /* stack[0] is free for a bound method's self (PY_VECTORCALL_ARGUMENTS_OFFSET). */
    stack[1] = call->signal;
    stack[2] = call->sender;
    for (Py_ssize_t i = 2; i < nnames; i++) {
        stack[i + 1] = call->values[i - 2];
    }
    Py_ssize_t j = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *receiver = receivers[i];
        if (receiver == Py_None) {
            continue;
        }
        PyObject *response = PyObject_Vectorcall(
            receiver, stack + 1, 0 | PY_VECTORCALL_ARGUMENTS_OFFSET, call->names);
        if (response == NULL) {
            Py_CLEAR(responses);
            goto done;
        }
        PyObject *pair = PyTuple_New(2);
        if (pair == NULL) {
            Py_DECREF(response);
            Py_CLEAR(responses);
            goto done;
        }
        PyTuple_SET_ITEM(pair, 0, Py_NewRef(receiver));
        PyTuple_SET_ITEM(pair, 1, response);
        PyList_SET_ITEM(responses, j++, pair);
    }
done:
    for (Py_ssize_t i = 0; i < made; i++) {
        Py_DECREF(receivers[i]);
    }
    if (receivers != receivers_small) {
        PyMem_Free(receivers);
    }
    if (stack != stack_small) {
        PyMem_Free(stack);
    }
    return responses;
}

static PyObject *
call_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Call *call = (Call *)op;
    if (PyVectorcall_NARGS(nargsf) != 0 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "a send's call takes no arguments");
        return NULL;
    }
    if (!call->live) {
        PyErr_SetString(PyExc_RuntimeError,
                        "a send's call can only be made by that send, while it runs");
        return NULL;
    }
    call->live = 0; /* once: a receiver calling it again would recurse */
    return call_receivers(call);
}

static void
call_dealloc(Call *self)
{
    PyObject_Free(self);
}

static PyTypeObject Call_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tocsin._speedups.Call",
    .tp_doc = "One send's calls to its receivers (internal).",
    .tp_basicsize = sizeof(Call),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_IMMUTABLETYPE |
                Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .tp_dealloc = (destructor)call_dealloc,
    .tp_vectorcall_offset = offsetof(Call, vectorcall),
    .tp_call = PyVectorcall_Call,
};

/* -- Signal.send -------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *pure;  /* the pure-Python Signal.send */
    PyObject *frame; /* def send(call): return call() */
    vectorcallfunc vectorcall;
} SendMethod;

/* New reference to the plan of *sender* (a tuple), or to None when the pure
 * send must decide; NULL with an exception set. As the pure send reads it:
 *     plan = self._any_plan
 *     if not plan and plan is None:
 *         plan = self._plans.get(id(sender)) or self._plan(sender)
 */
static PyObject *
find_plan(PyObject *signal, PyObject *sender)
{
    PyObject *plan = PyObject_GetAttr(signal, str_any_plan);
    if (plan == NULL || PyTuple_CheckExact(plan)) {
        return plan;
    }
    if (plan != Py_None) {
        return plan; /* not a plan: the pure send's business */
    }
    Py_DECREF(plan);
    PyObject *plans = PyObject_GetAttr(signal, str_plans);
    if (plans == NULL) {
        return NULL;
    }
    if (!PyDict_CheckExact(plans)) {
        Py_DECREF(plans);
        Py_RETURN_NONE;
    }
    PyObject *key = PyLong_FromVoidPtr(sender);
    if (key == NULL) {
        Py_DECREF(plans);
        return NULL;
    }
    plan = PyDict_GetItemWithError(plans, key); /* borrowed */
    Py_DECREF(key);
    if (plan != NULL && PyTuple_CheckExact(plan) && PyTuple_GET_SIZE(plan)) {
        Py_INCREF(plan);
        Py_DECREF(plans);
        return plan;
    }
    Py_DECREF(plans);
    if (PyErr_Occurred()) {
        return NULL;
    }
    return PyObject_CallMethodOneArg(signal, str_plan, sender);
}

static PyObject *
send_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    SendMethod *self = (SendMethod *)op;
    if (PyVectorcall_NARGS(nargsf) != 2 || (kwnames != NULL && names_reserved(kwnames))) {
        return PyObject_Vectorcall(self->pure, args, nargsf, kwnames);
    }
    PyObject *signal = args[0];
    PyObject *sender = args[1];
    PyObject *plan = find_plan(signal, sender);
    if (plan == NULL) {
        return NULL;
    }
    if (PyTuple_CheckExact(plan) && PyTuple_GET_SIZE(plan) == 0) {
        Py_DECREF(plan);
        return PyList_New(0); /* nobody is listening */
    }
    /* Only (sync derefs, ()) is for this path: the rest is the pure send's. */
    if (!PyTuple_CheckExact(plan) || PyTuple_GET_SIZE(plan) != 2 ||
        !PyTuple_CheckExact(PyTuple_GET_ITEM(plan, 0)) ||
        !PyTuple_CheckExact(PyTuple_GET_ITEM(plan, 1)) ||
        PyTuple_GET_SIZE(PyTuple_GET_ITEM(plan, 1)) != 0) {
        Py_DECREF(plan);
        return PyObject_Vectorcall(self->pure, args, nargsf, kwnames);
    }
    PyObject *derefs = PyTuple_GET_ITEM(plan, 0);
    if (PyTuple_GET_SIZE(derefs) == 0) {
        Py_DECREF(plan);
        return PyList_New(0);
    }
    PyObject *names = receiver_names(kwnames);
    if (names == NULL) {
        Py_DECREF(plan);
        return NULL;
    }
    Call *call = PyObject_New(Call, &Call_Type);
    if (call == NULL) {
        Py_DECREF(names);
        Py_DECREF(plan);
        return NULL;
    }
    call->signal = signal;
    call->sender = sender;
    call->derefs = derefs;
    call->values = args + 2;
    call->names = names;
    call->live = 1;
    call->vectorcall = call_vectorcall;
    PyObject *responses = PyObject_CallOneArg(self->frame, (PyObject *)call);
    /* Whatever the frame did, the borrowed pointers go stale now. */
    call->live = 0;
    Py_DECREF(call);
    Py_DECREF(names);
    Py_DECREF(plan);
    return responses;
}

static PyObject *
send_descr_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (obj == NULL || obj == Py_None) {
        return Py_NewRef(self);
    }
    return PyMethod_New(self, obj);
}

/* A SendMethod or WouldSendMethod around *pure* (their arguments checked). */
static PyObject *
descriptor_alloc(PyTypeObject *type, PyObject *pure, PyObject *frame, vectorcallfunc vectorcall)
{
    SendMethod *self = (SendMethod *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->pure = Py_NewRef(pure);
    self->frame = Py_NewRef(frame);
    self->vectorcall = vectorcall;
    return (PyObject *)self;
}

static PyObject *
send_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *pure, *frame;
    static char *keywords[] = {"pure", "frame", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO:SendMethod", keywords, &pure, &frame)) {
        return NULL;
    }
    if (!PyCallable_Check(pure) || !PyCallable_Check(frame)) {
        PyErr_SetString(PyExc_TypeError, "SendMethod(pure, frame) takes two callables");
        return NULL;
    }
    return descriptor_alloc(type, pure, frame, send_vectorcall);
}

static int
send_traverse(SendMethod *self, visitproc visit, void *arg)
{
    Py_VISIT(self->pure);
    Py_VISIT(self->frame);
    return 0;
}

static int
send_clear(SendMethod *self)
{
    Py_CLEAR(self->pure);
    Py_CLEAR(self->frame);
    return 0;
}

static void
send_dealloc(SendMethod *self)
{
    PyObject_GC_UnTrack(self);
    send_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Introspection sees the pure function: its name, docstring and signature. */
static PyObject *
send_get_pure_attr(SendMethod *self, void *name)
{
    return PyObject_GetAttrString(self->pure, (const char *)name);
}

static PyObject *
send_get_wrapped(SendMethod *self, void *closure)
{
    return Py_NewRef(self->pure);
}

static PyObject *
send_repr(SendMethod *self)
{
    return PyUnicode_FromFormat("<compiled %R>", self->pure);
}

static PyGetSetDef send_getset[] = {
    {"__wrapped__", (getter)send_get_wrapped, NULL, "The pure-Python Signal.send.", NULL},
    {"__doc__", (getter)send_get_pure_attr, NULL, NULL, "__doc__"},
    {"__name__", (getter)send_get_pure_attr, NULL, NULL, "__name__"},
    {"__qualname__", (getter)send_get_pure_attr, NULL, NULL, "__qualname__"},
    {"__module__", (getter)send_get_pure_attr, NULL, NULL, "__module__"},
    {"__annotations__", (getter)send_get_pure_attr, NULL, NULL, "__annotations__"},
    {NULL},
};

/* Both descriptors' type: they differ in name and constructor only. */
#define DESCRIPTOR_TYPE(NAME, NEW)                                                          \
    {                                                                                       \
        PyVarObject_HEAD_INIT(NULL, 0)                                                      \
        .tp_name = NAME,                                                                    \
        .tp_basicsize = sizeof(SendMethod),                                                 \
        .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |  \
                    Py_TPFLAGS_METHOD_DESCRIPTOR | Py_TPFLAGS_IMMUTABLETYPE,                \
        .tp_new = NEW,                                                                      \
        .tp_dealloc = (destructor)send_dealloc,                                             \
        .tp_traverse = (traverseproc)send_traverse,                                         \
        .tp_clear = (inquiry)send_clear,                                                    \
        .tp_repr = (reprfunc)send_repr,                                                     \
        .tp_getset = send_getset,                                                           \
        .tp_descr_get = send_descr_get,                                                     \
        .tp_vectorcall_offset = offsetof(SendMethod, vectorcall),                           \
        .tp_call = PyVectorcall_Call,                                                       \
    }

static PyTypeObject SendMethod_Type = DESCRIPTOR_TYPE("tocsin._speedups.SendMethod", send_new);

/* -- would_send() ------------------------------------------------------------ */

/* signal.would_send(sender): bool(plan), as the pure method answers. */
static PyObject *
would_send_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    SendMethod *self = (SendMethod *)op;
    if (PyVectorcall_NARGS(nargsf) != 2 || kwnames != NULL) {
        return PyObject_Vectorcall(self->pure, args, nargsf, kwnames);
    }
    PyObject *plan = find_plan(args[0], args[1]);
    if (plan == NULL) {
        return NULL;
    }
    if (!PyTuple_CheckExact(plan)) {
        Py_DECREF(plan);
        return PyObject_Vectorcall(self->pure, args, nargsf, kwnames);
    }
    int answer = PyTuple_GET_SIZE(plan) != 0;
    Py_DECREF(plan);
    return PyBool_FromLong(answer);
}

static PyObject *
would_send_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *pure;
    static char *keywords[] = {"pure", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O:WouldSendMethod", keywords, &pure)) {
        return NULL;
    }
    if (!PyCallable_Check(pure)) {
        PyErr_SetString(PyExc_TypeError, "WouldSendMethod(pure) takes a callable");
        return NULL;
    }
    return descriptor_alloc(type, pure, Py_None, would_send_vectorcall);
}

static PyTypeObject WouldSendMethod_Type =
    DESCRIPTOR_TYPE("tocsin._speedups.WouldSendMethod", would_send_new);

/* -- asend()'s calls ------------------------------------------------------------- */

/* call_each(receivers, signal, sender, named, made): append
 * receiver(signal=signal, sender=sender, **named) to the list *made* for each
 * receiver, in order. On an error it stops and raises, and *made* holds what
 * the calls before made (the caller closes those coroutines). *named* must not
 * hold "signal" or "sender" (the caller checks, as Python would raise).
 * Returns None, or NotImplemented, having called nothing, for a name that is
 * not exactly a str. */
static PyObject *
call_each(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 || !PyList_Check(args[0]) || !PyDict_Check(args[3]) ||
        !PyList_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError,
                        "call_each(receivers: list, signal, sender, named: dict, made: list)");
        return NULL;
    }
    PyObject *receivers = args[0], *named = args[3], *made = args[4];
    Py_ssize_t nnamed = PyDict_GET_SIZE(named);
    PyObject *names = PyTuple_New(nnamed + 2);
    if (names == NULL) {
        return NULL;
    }
    PyObject *stack_small[SMALL + 3];
    PyObject **stack = stack_small;
    if (nnamed + 3 > SMALL + 3) {
        stack = PyMem_Malloc((nnamed + 3) * sizeof(PyObject *));
        if (stack == NULL) {
            Py_DECREF(names);
            return PyErr_NoMemory();
        }
    }
    PyTuple_SET_ITEM(names, 0, Py_NewRef(PyTuple_GET_ITEM(signal_sender, 0)));
    PyTuple_SET_ITEM(names, 1, Py_NewRef(PyTuple_GET_ITEM(signal_sender, 1)));
    stack[1] = args[1];
    stack[2] = args[2];
    /* The dict is not changed while it is read: no Python code runs here. */
    PyObject *key, *value;
    Py_ssize_t position = 0, i = 2;
    while (PyDict_Next(named, &position, &key, &value)) {
        if (!PyUnicode_CheckExact(key)) {
            /* Not a name vectorcall takes: the caller calls them itself. */
            while (i < nnamed + 2) {
                PyTuple_SET_ITEM(names, i++, Py_NewRef(Py_None));
            }
            if (stack != stack_small) {
                PyMem_Free(stack);
            }
            Py_DECREF(names);
            return Py_NewRef(Py_NotImplemented);
        }
        PyTuple_SET_ITEM(names, i, Py_NewRef(key));
        stack[i + 1] = value;
        i++;
    }
    /* Strong references to the values: a receiver may change *named*. */
    for (Py_ssize_t j = 3; j < nnamed + 3; j++) {
        Py_INCREF(stack[j]);
    }
    PyObject *result = Py_None;
    /* Index by index: a receiver may change the list, which is the caller's. */
    for (Py_ssize_t j = 0; j < PyList_GET_SIZE(receivers); j++) {
        PyObject *receiver = Py_NewRef(PyList_GET_ITEM(receivers, j));
        PyObject *awaitable = PyObject_Vectorcall(
            receiver, stack + 1, 0 | PY_VECTORCALL_ARGUMENTS_OFFSET, names);
        Py_DECREF(receiver);
        if (awaitable == NULL || PyList_Append(made, awaitable) < 0) {
            Py_XDECREF(awaitable);
            result = NULL;
            break;
        }
        Py_DECREF(awaitable);
    }
    for (Py_ssize_t j = 3; j < nnamed + 3; j++) {
        Py_DECREF(stack[j]);
    }
    if (stack != stack_small) {
        PyMem_Free(stack);
    }
    Py_DECREF(names);
    return result == NULL ? NULL : Py_NewRef(Py_None);
}

static PyMethodDef speedups_functions[] = {
    {"call_each", (PyCFunction)(void (*)(void))call_each, METH_FASTCALL,
     "call_each(receivers, signal, sender, named, made)\n--\n\n"
     "Append receiver(signal=signal, sender=sender, **named) to *made* for each receiver."},
    {NULL},
};

/* -- the module ----------------------------------------------------------------- */

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tocsin._speedups",
    .m_doc = "tocsin's compiled send path (optional; see tocsin/_compiled.py).",
    .m_size = -1,
    .m_methods = speedups_functions,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (PyType_Ready(&MethodDeref_Type) < 0 || PyType_Ready(&Call_Type) < 0 ||
        PyType_Ready(&SendMethod_Type) < 0 || PyType_Ready(&WouldSendMethod_Type) < 0) {
        return NULL;
    }
    str_any_plan = PyUnicode_InternFromString("_any_plan");
    str_plans = PyUnicode_InternFromString("_plans");
    str_plan = PyUnicode_InternFromString("_plan");
    PyObject *signal = PyUnicode_InternFromString("signal");
    PyObject *sender = PyUnicode_InternFromString("sender");
    if (str_any_plan == NULL || str_plans == NULL || str_plan == NULL || signal == NULL ||
        sender == NULL) {
        return NULL;
    }
    signal_sender = PyTuple_Pack(2, signal, sender);
    Py_DECREF(signal);
    Py_DECREF(sender);
    if (signal_sender == NULL) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddIntConstant(module, "API_VERSION", API_VERSION) < 0 ||
        PyModule_AddObjectRef(module, "SendMethod", (PyObject *)&SendMethod_Type) < 0 ||
        PyModule_AddObjectRef(module, "WouldSendMethod", (PyObject *)&WouldSendMethod_Type) < 0 ||
        PyModule_AddObjectRef(module, "MethodDeref", (PyObject *)&MethodDeref_Type) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
