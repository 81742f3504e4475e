/*
 * hushflow.flow._wiredict: protobuf wire bytes -> the canonical event dict, in one pass.
 *
 * The pure-Python converter (hushflow/flow/proto_dict.py) walks a message that upb has already
 * parsed, asking each field whether it is set: ~12-16 us a Hubble flow, most of the time hushflow
 * spends per flow read from gRPC. This module reads the wire format directly and builds the same
 * dict (proto field names, enum names, 64-bit integers as strings, defaults omitted, declaration
 * order, Timestamps as RFC 3339, wrappers as their value) in ~2 us.
 *
 * It knows nothing of Flow: proto_dict.py describes every message type to it (Decoder.setup),
 * from the descriptors. Whatever it does not handle the way the Python converter does -- a
 * singular message field sent twice (protobuf merges them), a wire type that does not match the
 * field, invalid UTF-8, malformed bytes, a Timestamp outside years 1-9999, nesting deeper than
 * 64 -- raises Fallback, and the caller converts that message with upb and the Python converter,
 * so the result (or the error) is always the Python converter's. Types it leaves to Python
 * (Any, Duration, bytes, float wrappers, ...) are converted by a callable given in the schema.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "fixed-width fields are read as little-endian: a big-endian host needs byte swaps here"
#endif

enum {
    K_INT32 = 1, K_INT64, K_UINT32, K_UINT64, K_SINT32, K_SINT64, K_BOOL, K_ENUM,
    K_FIXED32, K_SFIXED32, K_FIXED64, K_SFIXED64, K_FLOAT, K_DOUBLE, K_STRING,
    K_MESSAGE, K_TIMESTAMP, K_WRAPPER, K_CALL,
};

#define DIRECT 128      /* field numbers below this are looked up in a table */
#define MAX_DEPTH 64
#define MAX_ONEOFS 32

typedef struct {
    uint32_t number;
    int kind;
    int inner;          /* K_WRAPPER: the kind of the wrapped value */
    int repeated;
    int presence;       /* 1: printed when on the wire, even if zero (messages, oneofs, optional) */
    int oneof;          /* -1, or the index of its oneof */
    PyObject *key;      /* str */
    PyObject *aux;      /* K_ENUM: dict number -> name; K_MESSAGE: Decoder; K_CALL: callable(bytes) */
} Field;

typedef struct {
    PyObject_HEAD
    Py_ssize_t nfields;
    Field *fields;
    int16_t direct[DIRECT];
    int noneofs;
} Decoder;

static PyObject *Fallback;
static PyTypeObject DecoderType;

/* -- wire primitives ------------------------------------------------------------------------ */

static inline int read_varint(const uint8_t **pp, const uint8_t *end, uint64_t *out) {
    const uint8_t *p = *pp;
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (p >= end) return 0;
        uint8_t b = *p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) { *pp = p; *out = v; return 1; }
    }
    return 0;
}

static int skip_field(const uint8_t **pp, const uint8_t *end, int wire) {
    uint64_t n;
    switch (wire) {
    case 0: return read_varint(pp, end, &n);
    case 1: if (end - *pp < 8) return 0; *pp += 8; return 1;
    case 2:
        if (!read_varint(pp, end, &n) || n > (uint64_t)(end - *pp)) return 0;
        *pp += n; return 1;
    case 5: if (end - *pp < 4) return 0; *pp += 4; return 1;
    default: return 0;  /* groups: not in proto3 */
    }
}

static PyObject *fallback(const char *why) {
    PyErr_SetString(Fallback, why);
    return NULL;
}

/* protobuf numbers fields 1 to 2**29 - 1 and refuses a tag of any other: so does this module,
   by handing such bytes back (instead of skipping the tag as an unknown field). */
#define MAX_FIELD_NUMBER 536870911u

static inline int valid_field_number(uint64_t tag) {
    uint64_t number = tag >> 3;
    return number >= 1 && number <= MAX_FIELD_NUMBER;
}

static PyObject *str_of_i64(int64_t v) {
    char buf[24];
    int n = snprintf(buf, sizeof buf, "%lld", (long long)v);
    return PyUnicode_FromStringAndSize(buf, n);
}

static PyObject *str_of_u64(uint64_t v) {
    char buf[24];
    int n = snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    return PyUnicode_FromStringAndSize(buf, n);
}

static PyObject *json_double(double v) {
    if (isnan(v)) return PyUnicode_FromString("NaN");
    if (isinf(v)) return PyUnicode_FromString(v > 0 ? "Infinity" : "-Infinity");
    return PyFloat_FromDouble(v);
}

/* -- strings ----------------------------------------------------------------------------------- */

/* Hubble flows repeat the same short strings (labels, namespaces, pod and node names) flow after
 * flow: a direct-mapped cache of recent short ASCII strings hands out the existing object instead
 * of decoding and allocating again, and that object's hash, once computed, is reused by every dict
 * and tuple the pipeline builds from it. Only touched with the GIL held. */
#define STRING_CACHE_SIZE 8192  /* a power of two */
#define STRING_CACHE_MAX_LEN 96
static PyObject *string_cache[STRING_CACHE_SIZE];

static PyObject *string_value(const uint8_t *p, Py_ssize_t n) {
    if (n == 0 || n > STRING_CACHE_MAX_LEN)
        return PyUnicode_DecodeUTF8((const char *)p, n, NULL);
    uint64_t h = 1469598103934665603ULL;  /* FNV-1a */
    uint8_t high = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        high |= p[i];
        h = (h ^ p[i]) * 1099511628211ULL;
    }
    if (high & 0x80)  /* not ASCII: decode (and validate) as usual */
        return PyUnicode_DecodeUTF8((const char *)p, n, NULL);
    PyObject **slot = &string_cache[h & (STRING_CACHE_SIZE - 1)];
    PyObject *cached = *slot;
    if (cached != NULL && PyUnicode_GET_LENGTH(cached) == n && memcmp(PyUnicode_1BYTE_DATA(cached), p, (size_t)n) == 0)
        return Py_NewRef(cached);
    PyObject *value = PyUnicode_DecodeUTF8((const char *)p, n, NULL);
    if (value != NULL)
        Py_XSETREF(*slot, Py_NewRef(value));
    return value;
}

/* -- Timestamp ------------------------------------------------------------------------------- */

/* Days since 1970-01-01 -> civil date (proleptic Gregorian), after H. Hinnant's algorithm. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t yy = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yy + (*m <= 2);
}

static PyObject *timestamp_value(const uint8_t *p, const uint8_t *end) {
    int64_t seconds = 0;
    int64_t nanos = 0;
    while (p < end) {
        uint64_t tag, v;
        if (!read_varint(&p, end, &tag)) return fallback("malformed Timestamp");
        int wire = (int)(tag & 7);
        uint64_t number = tag >> 3;
        if (!valid_field_number(tag)) return fallback("malformed Timestamp");
        if ((number == 1 || number == 2) && wire == 0) {
            if (!read_varint(&p, end, &v)) return fallback("malformed Timestamp");
            if (number == 1) seconds = (int64_t)v; else nanos = (int32_t)v;
        } else if (!skip_field(&p, end, wire)) {
            return fallback("malformed Timestamp");
        }
    }
    /* protojson's range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z */
    if (seconds < -62135596800LL || seconds > 253402300799LL || nanos < 0 || nanos > 999999999)
        return fallback("Timestamp out of range");
    int64_t days = seconds >= 0 ? seconds / 86400 : -((-seconds + 86399) / 86400);
    int64_t rem = seconds - days * 86400;
    int64_t year;
    unsigned month, day;
    civil_from_days(days, &year, &month, &day);
    char buf[48];
    int n = snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02d:%02d:%02d", (long long)year, month, day,
                     (int)(rem / 3600), (int)(rem % 3600 / 60), (int)(rem % 60));
    if (nanos == 0)
        n += snprintf(buf + n, sizeof buf - n, "Z");
    else if (nanos % 1000000 == 0)
        n += snprintf(buf + n, sizeof buf - n, ".%03dZ", (int)(nanos / 1000000));
    else if (nanos % 1000 == 0)
        n += snprintf(buf + n, sizeof buf - n, ".%06dZ", (int)(nanos / 1000));
    else
        n += snprintf(buf + n, sizeof buf - n, ".%09dZ", (int)nanos);
    return PyUnicode_FromStringAndSize(buf, n);
}

/* -- scalars --------------------------------------------------------------------------------- */

static int wire_of(int kind) {
    switch (kind) {
    case K_FIXED32: case K_SFIXED32: case K_FLOAT: return 5;
    case K_FIXED64: case K_SFIXED64: case K_DOUBLE: return 1;
    case K_STRING: case K_MESSAGE: case K_TIMESTAMP: case K_WRAPPER: case K_CALL: return 2;
    default: return 0;
    }
}

/* A numeric value already read (varint or fixed) -> Python; *zero says whether it is the default. */
static PyObject *numeric_value(int kind, uint64_t v, PyObject *aux, int *zero) {
    switch (kind) {
    case K_INT32: case K_SFIXED32: { int32_t x = (int32_t)v; *zero = x == 0; return PyLong_FromLong(x); }
    case K_UINT32: case K_FIXED32: { uint32_t x = (uint32_t)v; *zero = x == 0; return PyLong_FromUnsignedLong(x); }
    case K_SINT32: {
        uint32_t u = (uint32_t)v;
        int32_t x = (int32_t)((u >> 1) ^ (~(u & 1) + 1));
        *zero = x == 0;
        return PyLong_FromLong(x);
    }
    case K_INT64: case K_SFIXED64: *zero = v == 0; return str_of_i64((int64_t)v);
    case K_UINT64: case K_FIXED64: *zero = v == 0; return str_of_u64(v);
    case K_SINT64: {
        int64_t x = (int64_t)((v >> 1) ^ (~(v & 1) + 1));
        *zero = x == 0;
        return str_of_i64(x);
    }
    case K_BOOL: *zero = v == 0; return Py_NewRef(v ? Py_True : Py_False);
    case K_ENUM: {
        int32_t x = (int32_t)v;
        *zero = x == 0;
        PyObject *number = PyLong_FromLong(x);
        if (number == NULL) return NULL;
        PyObject *name = PyDict_GetItemWithError(aux, number);  /* borrowed */
        if (name == NULL) {
            if (PyErr_Occurred()) { Py_DECREF(number); return NULL; }
            return number;  /* an unknown number stays a number */
        }
        Py_DECREF(number);
        return Py_NewRef(name);
    }
    case K_FLOAT: {
        uint32_t bits = (uint32_t)v;
        float f;
        memcpy(&f, &bits, 4);
        *zero = f == 0.0f;
        return json_double((double)f);
    }
    case K_DOUBLE: {
        double d;
        memcpy(&d, &v, 8);
        *zero = d == 0.0;
        return json_double(d);
    }
    }
    return fallback("not a numeric field");
}

static int read_numeric(int kind, const uint8_t **pp, const uint8_t *end, uint64_t *v) {
    int wire = wire_of(kind);
    if (wire == 0) return read_varint(pp, end, v);
    if (wire == 5) {
        if (end - *pp < 4) return 0;
        uint32_t x; memcpy(&x, *pp, 4); *pp += 4; *v = x;  /* little-endian hosts */
        return 1;
    }
    if (end - *pp < 8) return 0;
    memcpy(v, *pp, 8); *pp += 8;
    return 1;
}

static PyObject *decode_message(Decoder *d, const uint8_t *p, const uint8_t *end, int depth);

/* A wrapper message (google.protobuf.BoolValue, ...): the value of its field 1, or the default. */
static PyObject *wrapper_value(int inner, const uint8_t *p, const uint8_t *end) {
    PyObject *value = NULL;
    while (p < end) {
        uint64_t tag;
        if (!read_varint(&p, end, &tag)) { Py_XDECREF(value); return fallback("malformed wrapper"); }
        if (!valid_field_number(tag)) { Py_XDECREF(value); return fallback("invalid field number"); }
        int wire = (int)(tag & 7);
        if ((tag >> 3) != 1) {
            if (!skip_field(&p, end, wire)) { Py_XDECREF(value); return fallback("malformed wrapper"); }
            continue;
        }
        if (wire != wire_of(inner)) { Py_XDECREF(value); return fallback("wire type"); }
        Py_CLEAR(value);
        if (inner == K_STRING) {
            uint64_t n;
            if (!read_varint(&p, end, &n) || n > (uint64_t)(end - p)) return fallback("malformed wrapper");
            value = string_value(p, (Py_ssize_t)n);
            if (value == NULL) { PyErr_Clear(); return fallback("invalid UTF-8"); }
            p += n;
        } else {
            uint64_t v;
            int zero;
            if (!read_numeric(inner, &p, end, &v)) return fallback("malformed wrapper");
            value = numeric_value(inner, v, NULL, &zero);
            if (value == NULL) return NULL;
        }
    }
    if (value != NULL) return value;
    if (inner == K_STRING) return PyUnicode_FromStringAndSize("", 0);
    int zero;
    return numeric_value(inner, 0, NULL, &zero);
}

/* -- messages -------------------------------------------------------------------------------- */

static inline Field *field_of(Decoder *d, uint64_t number) {
    if (number < DIRECT) {
        int i = d->direct[number];
        return i < 0 ? NULL : &d->fields[i];
    }
    for (Py_ssize_t i = 0; i < d->nfields; i++)
        if (d->fields[i].number == number) return &d->fields[i];
    return NULL;
}

static int append(PyObject **slot, PyObject *value) {
    if (*slot == NULL) {
        *slot = PyList_New(0);
        if (*slot == NULL) { Py_DECREF(value); return -1; }
    }
    int rc = PyList_Append(*slot, value);
    Py_DECREF(value);
    return rc;
}

static PyObject *decode_message(Decoder *d, const uint8_t *p, const uint8_t *end, int depth) {
    if (depth > MAX_DEPTH) return fallback("nested too deep");
    if (d->fields == NULL && d->nfields) return fallback("decoder not set up");
    PyObject *stack[64];
    PyObject **slots = stack;
    if (d->nfields > 64) {
        slots = PyMem_Calloc((size_t)d->nfields, sizeof(PyObject *));
        if (slots == NULL) return PyErr_NoMemory();
    } else {
        memset(stack, 0, sizeof stack);
    }
    Py_ssize_t oneof_set[MAX_ONEOFS];
    for (int i = 0; i < d->noneofs; i++) oneof_set[i] = -1;
    PyObject *result = NULL;

    while (p < end) {
        uint64_t tag;
        if (!read_varint(&p, end, &tag)) { fallback("malformed message"); goto done; }
        if (!valid_field_number(tag)) { fallback("invalid field number"); goto done; }
        int wire = (int)(tag & 7);
        Field *f = field_of(d, tag >> 3);
        if (f == NULL) {  /* unknown field: protojson does not print it */
            if (!skip_field(&p, end, wire)) { fallback("malformed message"); goto done; }
            continue;
        }
        Py_ssize_t index = f - d->fields;
        PyObject **slot = &slots[index];
        int expected = wire_of(f->kind);

        if (f->repeated && wire == 2 && expected != 2) {  /* packed numbers */
            uint64_t n;
            if (!read_varint(&p, end, &n) || n > (uint64_t)(end - p)) { fallback("malformed packed field"); goto done; }
            const uint8_t *q = p, *qend = p + n;
            p = qend;
            if (*slot == NULL && (*slot = PyList_New(0)) == NULL) goto done;
            while (q < qend) {
                uint64_t v;
                int zero;
                if (!read_numeric(f->kind, &q, qend, &v)) { fallback("malformed packed field"); goto done; }
                PyObject *value = numeric_value(f->kind, v, f->aux, &zero);
                if (value == NULL || append(slot, value) < 0) goto done;
            }
            continue;
        }
        if (wire != expected) { fallback("wire type does not match the field"); goto done; }

        PyObject *value = NULL;
        int zero = 0;
        if (expected == 2) {
            uint64_t n;
            if (!read_varint(&p, end, &n) || n > (uint64_t)(end - p)) { fallback("malformed length"); goto done; }
            const uint8_t *q = p;
            p += n;
            switch (f->kind) {
            case K_STRING:
                value = string_value(q, (Py_ssize_t)n);
                if (value == NULL) { PyErr_Clear(); fallback("invalid UTF-8"); goto done; }
                zero = n == 0;
                break;
            case K_MESSAGE:
                if (!f->repeated && *slot != NULL) { fallback("message field sent twice (merge)"); goto done; }
                value = decode_message((Decoder *)f->aux, q, q + n, depth + 1);
                break;
            case K_TIMESTAMP:
                if (!f->repeated && *slot != NULL) { fallback("message field sent twice (merge)"); goto done; }
                value = timestamp_value(q, q + n);
                break;
            case K_WRAPPER:
                if (!f->repeated && *slot != NULL) { fallback("message field sent twice (merge)"); goto done; }
                value = wrapper_value(f->inner, q, q + n);
                break;
            default: {  /* K_CALL: left to Python (bytes, Any, Duration, ...) */
                if (!f->repeated && *slot != NULL && f->presence) { fallback("message field sent twice (merge)"); goto done; }
                PyObject *raw = PyBytes_FromStringAndSize((const char *)q, (Py_ssize_t)n);
                if (raw == NULL) goto done;
                value = PyObject_CallOneArg(f->aux, raw);
                Py_DECREF(raw);
                if (value == NULL) {
                    /* Whether the error stands is protobuf's to say: a later member of a oneof
                       may replace the message this value is in, and it is then never converted. */
                    PyErr_Clear();
                    fallback("a value converted by Python failed");
                    goto done;
                }
                zero = n == 0 && !f->presence;
            }
            }
        } else {
            uint64_t v;
            if (!read_numeric(f->kind, &p, end, &v)) { fallback("malformed number"); goto done; }
            value = numeric_value(f->kind, v, f->aux, &zero);
        }
        if (value == NULL) goto done;

        if (f->repeated) {
            if (append(slot, value) < 0) goto done;
            continue;
        }
        if (f->oneof >= 0) {  /* the last member of a oneof on the wire wins */
            Py_ssize_t previous = oneof_set[f->oneof];
            if (previous >= 0 && previous != index) Py_CLEAR(slots[previous]);
            oneof_set[f->oneof] = index;
        }
        if (zero && !f->presence) {  /* proto3: a default value is not printed (and the last wins) */
            Py_DECREF(value);
            Py_CLEAR(*slot);
        } else {
            Py_XSETREF(*slot, value);
        }
    }

    result = PyDict_New();
    if (result == NULL) goto done;
    for (Py_ssize_t i = 0; i < d->nfields; i++) {
        if (slots[i] != NULL && PyDict_SetItem(result, d->fields[i].key, slots[i]) < 0) {
            Py_CLEAR(result);
            goto done;
        }
    }

done:
    for (Py_ssize_t i = 0; i < d->nfields; i++) Py_XDECREF(slots[i]);
    if (slots != stack) PyMem_Free(slots);
    return result;
}

/* -- the Decoder type ------------------------------------------------------------------------ */

static void decoder_clear_fields(Decoder *self) {
    if (self->fields != NULL) {
        for (Py_ssize_t i = 0; i < self->nfields; i++) {
            Py_XDECREF(self->fields[i].key);
            Py_XDECREF(self->fields[i].aux);
        }
        PyMem_Free(self->fields);
    }
    self->fields = NULL;
    self->nfields = 0;
}

static int decoder_traverse(Decoder *self, visitproc visit, void *arg) {
    for (Py_ssize_t i = 0; self->fields != NULL && i < self->nfields; i++) Py_VISIT(self->fields[i].aux);
    return 0;
}

static int decoder_clear(Decoder *self) {
    decoder_clear_fields(self);
    return 0;
}

static void decoder_dealloc(Decoder *self) {
    PyObject_GC_UnTrack(self);
    decoder_clear_fields(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *decoder_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    Decoder *self = (Decoder *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->fields = NULL;
    self->nfields = 0;
    self->noneofs = 0;
    for (int i = 0; i < DIRECT; i++) self->direct[i] = -1;
    return (PyObject *)self;
}

PyDoc_STRVAR(setup_doc,
"setup(fields, oneofs)\n\n"
"fields: in declaration order, tuples (number, key, kind, inner, repeated, presence, oneof, aux);\n"
"oneofs: how many oneofs. May be called once, after all Decoders referred to exist.");

static PyObject *decoder_setup(Decoder *self, PyObject *args) {
    PyObject *fields;
    int noneofs;
    if (!PyArg_ParseTuple(args, "O!i", &PyTuple_Type, &fields, &noneofs)) return NULL;
    if (self->fields != NULL) { PyErr_SetString(PyExc_RuntimeError, "Decoder.setup called twice"); return NULL; }
    if (noneofs < 0 || noneofs > MAX_ONEOFS) { PyErr_SetString(PyExc_ValueError, "too many oneofs"); return NULL; }
    Py_ssize_t n = PyTuple_GET_SIZE(fields);
    if (n > INT16_MAX) { PyErr_SetString(PyExc_ValueError, "too many fields"); return NULL; }
    Field *table = PyMem_Calloc(n ? (size_t)n : 1, sizeof(Field));
    if (table == NULL) return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++) {
        Field *f = &table[i];
        unsigned long number;
        PyObject *key, *aux;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(fields, i), "kUiippiO", &number, &key, &f->kind, &f->inner,
                              &f->repeated, &f->presence, &f->oneof, &aux)) {
            for (Py_ssize_t j = 0; j < i; j++) { Py_DECREF(table[j].key); Py_DECREF(table[j].aux); }
            PyMem_Free(table);
            return NULL;
        }
        int bad = f->kind < K_INT32 || f->kind > K_CALL || f->oneof >= noneofs
            || (f->kind == K_MESSAGE && !PyObject_TypeCheck(aux, &DecoderType))
            || (f->kind == K_ENUM && !PyDict_Check(aux))
            || (f->kind == K_CALL && !PyCallable_Check(aux))
            || (f->kind == K_WRAPPER && (f->inner < K_INT32 || f->inner > K_STRING || f->inner == K_ENUM));
        if (bad) {
            for (Py_ssize_t j = 0; j < i; j++) { Py_DECREF(table[j].key); Py_DECREF(table[j].aux); }
            PyMem_Free(table);
            PyErr_Format(PyExc_ValueError, "field %zd: bad specification", i);
            return NULL;
        }
        f->number = (uint32_t)number;
        f->key = Py_NewRef(key);
        f->aux = Py_NewRef(aux);
    }
    self->fields = table;
    self->nfields = n;
    self->noneofs = noneofs;
    for (Py_ssize_t i = 0; i < n; i++)
        if (table[i].number < DIRECT) self->direct[table[i].number] = (int16_t)i;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(decode_doc,
"decode(data) -> dict\n\nThe canonical dict of one serialized message; raises Fallback when the\n"
"Python converter must do it.");

static PyObject *decoder_decode(Decoder *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    const uint8_t *p = (const uint8_t *)view.buf;
    PyObject *result = decode_message(self, p, p + view.len, 0);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef decoder_methods[] = {
    {"setup", (PyCFunction)decoder_setup, METH_VARARGS, setup_doc},
    {"decode", (PyCFunction)decoder_decode, METH_O, decode_doc},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject DecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "hushflow.flow._wiredict.Decoder",
    .tp_basicsize = sizeof(Decoder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A protobuf message type's wire-bytes-to-dict converter (see the module).",
    .tp_new = decoder_new,
    .tp_dealloc = (destructor)decoder_dealloc,
    .tp_traverse = (traverseproc)decoder_traverse,
    .tp_clear = (inquiry)decoder_clear,
    .tp_methods = decoder_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_wiredict",
    "Protobuf wire bytes -> canonical protojson dicts (see hushflow/flow/proto_dict.py).", -1, NULL,
};

PyMODINIT_FUNC PyInit__wiredict(void) {
    if (PyType_Ready(&DecoderType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Fallback = PyErr_NewException("hushflow.flow._wiredict.Fallback", PyExc_ValueError, NULL);
    if (Fallback == NULL || PyModule_AddObjectRef(m, "Fallback", Fallback) < 0
        || PyModule_AddObjectRef(m, "Decoder", (PyObject *)&DecoderType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
#define KIND(name) if (PyModule_AddIntConstant(m, #name, name) < 0) { Py_DECREF(m); return NULL; }
    KIND(K_INT32) KIND(K_INT64) KIND(K_UINT32) KIND(K_UINT64) KIND(K_SINT32) KIND(K_SINT64)
    KIND(K_BOOL) KIND(K_ENUM) KIND(K_FIXED32) KIND(K_SFIXED32) KIND(K_FIXED64) KIND(K_SFIXED64)
    KIND(K_FLOAT) KIND(K_DOUBLE) KIND(K_STRING) KIND(K_MESSAGE) KIND(K_TIMESTAMP) KIND(K_WRAPPER)
    KIND(K_CALL)
#undef KIND
    return m;
}
