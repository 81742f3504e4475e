/*
 * hushflow.flow._jsonpb_proof: prove, from its bytes alone, that a JSON line is already exactly
 * what hushflow's jsonpb encoder prints for it (Hubble's `-o jsonpb` bytes).
 *
 * `hushflow observe -o jsonpb` must print what Hubble prints, whatever spelling the input used,
 * so every event is re-encoded (hushflow/flow/protojson.py). Parsing, proving and re-encoding a
 * 1.9 KB flow in Python costs several times the parse alone. Most input is Hubble's own output,
 * already canonical: this module walks the line once, without building any Python object, and
 * answers "these bytes are the canonical encoding" only when the re-encoding would give them
 * back unchanged. Then the line is printed as it is and parsed only if something reads it.
 *
 * Canonical means, at every level (the same rules as protojson.make_canonical_event_check, and
 * the bytes orjson.dumps + go_json_escape write):
 *   - compact JSON, no whitespace outside strings, nothing after the top-level object;
 *   - keys are proto field names (no JSON-name aliases, no escapes), in declaration order,
 *     each at most once, at most one field of a oneof;
 *   - no default values where the field has no presence: "", false, 0, "0" for 64-bit, the
 *     enum's zero name, empty arrays (never allowed);
 *   - strings escaped as orjson does (\" \\ \b \t \n \f \r, \u00xx in lower case for the other
 *     control characters) plus Go's HTML-safe escapes \u003c \u003e \u0026 \u2028 \u2029, and
 *     no other escape; valid UTF-8 (no surrogates, nothing past U+10FFFF, no overlong forms);
 *   - enums by one of the names the schema allows; 32-bit integers as JSON integers in range
 *     (no "-0", fraction or exponent); 64-bit ones as decimal strings in range;
 *   - Timestamps as Go writes them (UTC, a valid date from 1970, 0/3/6/9 fraction digits whose
 *     last three are never 000).
 * Anything else (floats, Any, maps, another spelling) is "not proven": the caller takes the slow
 * path, which is always right. A wrong "proven" would print bytes Hubble does not print, so the
 * rules only ever say no when unsure (tests/flow/test_jsonpb_proof.py holds the proof against
 * the Python encoder on every recorded and generated line and on mutations of them).
 *
 * The schema comes from protojson.py's message descriptions (Schema.setup), never from here.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum {
    K_NEVER = 0, K_STRING, K_BOOL, K_ENUM, K_INT32, K_UINT32, K_INT64, K_UINT64,
    K_TIMESTAMP, K_MESSAGE,
};

#define MAX_DEPTH 32
#define MAX_ONEOFS 64

typedef struct {
    const char *name;   /* borrowed from `names` */
    Py_ssize_t len;
} Name;

typedef struct Schema Schema;

typedef struct {
    const char *key;    /* the proto field name, borrowed from the bytes object in `keep` */
    Py_ssize_t key_len;
    int kind;
    int repeated;
    int falsy_ok;       /* presence or oneof: a zero value is printed */
    int oneof;          /* -1, or the index of its oneof */
    Name *names;        /* K_ENUM: the allowed names, sorted as bytes */
    Py_ssize_t nnames;
    Schema *message;    /* K_MESSAGE */
} Field;

struct Schema {
    PyObject_HEAD
    Py_ssize_t nfields;
    Field *fields;
    PyObject *keep;     /* the setup tuple: keeps every borrowed buffer alive */
};

static PyTypeObject SchemaType;

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
} Cursor;

/* -- values ---------------------------------------------------------------------------------- */

/* 1 for the bytes a string holds as they are: printable ASCII but " \\ < > & (set at import). */
static unsigned char plain_byte[256];

static void init_plain(void) {
    for (int ch = 0x20; ch < 0x80; ch++) plain_byte[ch] = 1;
    plain_byte['"'] = plain_byte['\\'] = plain_byte['<'] = plain_byte['>'] = plain_byte['&'] = 0;
}

static int hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;  /* orjson writes lower case: upper case is another spelling */
}

/* A JSON string as orjson + go_json_escape write it. On success *start and *len are the bytes
 * between the quotes and *plain is 1 when they hold no escape. */
static int string_ok(Cursor *c, const unsigned char **start, Py_ssize_t *len, int *plain) {
    const unsigned char *p = c->p, *end = c->end;
    if (p >= end || *p != '"') return 0;
    p++;
    const unsigned char *s = p;
    int clean = 1;
    while (p < end) {
        /* The bulk of every string: printable ASCII that needs no escape, 8 bytes at a time. */
        while (end - p >= 8 && plain_byte[p[0]] & plain_byte[p[1]] & plain_byte[p[2]] & plain_byte[p[3]]
               & plain_byte[p[4]] & plain_byte[p[5]] & plain_byte[p[6]] & plain_byte[p[7]])
            p += 8;
        while (p < end && plain_byte[*p]) p++;
        if (p >= end) break;
        unsigned char ch = *p;
        if (ch == '"') {
            *start = s;
            *len = p - s;
            *plain = clean;
            c->p = p + 1;
            return 1;
        }
        if (ch < 0x20 || ch == '<' || ch == '>' || ch == '&') return 0;
        if (ch == '\\') {
            clean = 0;
            if (p + 1 >= end) return 0;
            unsigned char e = p[1];
            if (e == '"' || e == '\\' || e == 'b' || e == 't' || e == 'n' || e == 'f' || e == 'r') {
                p += 2;
                continue;
            }
            if (e != 'u' || p + 6 > end) return 0;
            int h[4];
            for (int i = 0; i < 4; i++) {
                h[i] = hexval(p[2 + i]);
                if (h[i] < 0) return 0;
            }
            unsigned int cp = (unsigned)(h[0] << 12 | h[1] << 8 | h[2] << 4 | h[3]);
            int ok = (cp < 0x20 && cp != 0x08 && cp != 0x09 && cp != 0x0a && cp != 0x0c && cp != 0x0d)
                     || cp == 0x3c || cp == 0x3e || cp == 0x26 || cp == 0x2028 || cp == 0x2029;
            if (!ok) return 0;
            p += 6;
            continue;
        }
        if (ch < 0x80) {
            p++;
            continue;
        }
        /* UTF-8, strictly: what orjson.loads accepts and dumps gives back as it is. */
        if (ch >= 0xc2 && ch <= 0xdf) {
            if (p + 2 > end || (p[1] & 0xc0) != 0x80) return 0;
            p += 2;
        } else if (ch >= 0xe0 && ch <= 0xef) {
            if (p + 3 > end || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80) return 0;
            if (ch == 0xe0 && p[1] < 0xa0) return 0;                   /* overlong */
            if (ch == 0xed && p[1] >= 0xa0) return 0;                  /* a surrogate */
            if (ch == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) return 0;  /* Go escapes */
            p += 3;
        } else if (ch >= 0xf0 && ch <= 0xf4) {
            if (p + 4 > end || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
                return 0;
            if (ch == 0xf0 && p[1] < 0x90) return 0;                   /* overlong */
            if (ch == 0xf4 && p[1] >= 0x90) return 0;                  /* past U+10FFFF */
            p += 4;
        } else {
            return 0;
        }
    }
    return 0;
}

/* A JSON integer (no fraction, exponent or "-0") in [lo, hi]; *zero tells whether it was 0. */
static int int_ok(Cursor *c, int64_t lo, int64_t hi, int *zero) {
    const unsigned char *p = c->p, *end = c->end;
    int neg = 0;
    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    if (p >= end || *p < '0' || *p > '9') return 0;
    const unsigned char *digits = p;
    uint64_t v = 0;
    if (*p == '0') {
        p++;
        if (neg) return 0;
    } else {
        while (p < end && *p >= '0' && *p <= '9') {
            if (p - digits >= 11) return 0;  /* beyond any 32-bit value */
            v = v * 10 + (uint64_t)(*p - '0');
            p++;
        }
    }
    if (p < end && (*p == '.' || *p == 'e' || *p == 'E')) return 0;
    int64_t s = neg ? -(int64_t)v : (int64_t)v;
    if (s < lo || s > hi) return 0;
    *zero = (v == 0);
    c->p = p;
    return 1;
}

/* A 64-bit integer as protojson writes it: the decimal digits in a string. */
static int int64_ok(Cursor *c, int is_unsigned, int *zero) {
    const unsigned char *p = c->p, *end = c->end;
    if (p >= end || *p != '"') return 0;
    p++;
    int neg = 0;
    if (p < end && *p == '-') {
        if (is_unsigned) return 0;
        neg = 1;
        p++;
    }
    const unsigned char *digits = p;
    while (p < end && *p >= '0' && *p <= '9') p++;
    Py_ssize_t n = p - digits;
    if (n == 0 || p >= end || *p != '"') return 0;
    if (digits[0] == '0' && (n > 1 || neg)) return 0;
    if (n > 20) return 0;
    /* Compare with the limit as digit strings of the same length. */
    const char *limit = is_unsigned ? "18446744073709551615" : (neg ? "9223372036854775808" : "9223372036854775807");
    Py_ssize_t limit_len = (Py_ssize_t)strlen(limit);
    if (n > limit_len) return 0;
    if (n == limit_len && memcmp(digits, limit, (size_t)n) > 0) return 0;
    *zero = (n == 1 && digits[0] == '0');
    c->p = p + 1;
    return 1;
}

static int days_in_month(int year, int month) {
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month == 2 && ((year % 4 == 0 && year % 100 != 0) || year % 400 == 0)) return 29;
    return days[month - 1];
}

static int digits_at(const unsigned char *p, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return 0;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return 1;
}

/* "YYYY-MM-DDTHH:MM:SS[.fff|.ffffff|.fffffffff]Z", as Go's Timestamp JSON writes it. */
static int timestamp_ok(Cursor *c) {
    const unsigned char *s;
    Py_ssize_t len;
    int plain;
    if (!string_ok(c, &s, &len, &plain) || !plain) return 0;
    if (len != 20 && len != 24 && len != 27 && len != 30) return 0;
    int year, month, day, hour, minute, second;
    if (!digits_at(s, 4, &year) || s[4] != '-' || !digits_at(s + 5, 2, &month) || s[7] != '-'
        || !digits_at(s + 8, 2, &day) || s[10] != 'T' || !digits_at(s + 11, 2, &hour) || s[13] != ':'
        || !digits_at(s + 14, 2, &minute) || s[16] != ':' || !digits_at(s + 17, 2, &second))
        return 0;
    if (year < 1970 || month < 1 || month > 12 || day < 1 || day > days_in_month(year, month)
        || hour > 23 || minute > 59 || second > 59)
        return 0;
    if (s[len - 1] != 'Z') return 0;
    if (len == 20) return 1;
    if (s[19] != '.') return 0;
    Py_ssize_t nfrac = len - 21;
    for (Py_ssize_t i = 0; i < nfrac; i++)
        if (s[20 + i] < '0' || s[20 + i] > '9') return 0;
    const unsigned char *last3 = s + 20 + nfrac - 3;
    return !(last3[0] == '0' && last3[1] == '0' && last3[2] == '0');
}

static int enum_ok(Cursor *c, const Field *f) {
    const unsigned char *s;
    Py_ssize_t len;
    int plain;
    if (!string_ok(c, &s, &len, &plain) || !plain) return 0;
    Py_ssize_t lo = 0, hi = f->nnames;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        const Name *n = &f->names[mid];
        Py_ssize_t m = n->len < len ? n->len : len;
        int cmp = memcmp(n->name, s, (size_t)m);
        if (cmp == 0) cmp = (n->len > len) - (n->len < len);
        if (cmp == 0) return 1;
        if (cmp < 0) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

static int object_ok(Cursor *c, const Schema *schema, int depth, const unsigned char **first_end);

/* One value of field f (an element, when f is repeated). *falsy: it was the zero value. */
static int value_ok(Cursor *c, const Field *f, int depth, int *falsy) {
    const unsigned char *s;
    Py_ssize_t len;
    int plain;
    *falsy = 0;
    switch (f->kind) {
    case K_STRING:
        if (!string_ok(c, &s, &len, &plain)) return 0;
        *falsy = (len == 0);
        return 1;
    case K_BOOL:
        if (c->end - c->p >= 4 && memcmp(c->p, "true", 4) == 0) {
            c->p += 4;
            return 1;
        }
        if (c->end - c->p >= 5 && memcmp(c->p, "false", 5) == 0) {
            c->p += 5;
            *falsy = 1;
            return 1;
        }
        return 0;
    case K_ENUM:
        return enum_ok(c, f);  /* the zero name is simply not among the allowed ones */
    case K_INT32:
        return int_ok(c, INT32_MIN, INT32_MAX, falsy);
    case K_UINT32:
        return int_ok(c, 0, UINT32_MAX, falsy);
    case K_INT64:
        return int64_ok(c, 0, falsy);
    case K_UINT64:
        return int64_ok(c, 1, falsy);
    case K_TIMESTAMP:
        return timestamp_ok(c);
    case K_MESSAGE:
        return object_ok(c, f->message, depth + 1, NULL);
    default:
        return 0;
    }
}

static int object_ok(Cursor *c, const Schema *schema, int depth, const unsigned char **first_end) {
    if (depth > MAX_DEPTH || c->p >= c->end || *c->p != '{') return 0;
    c->p++;
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        return 1;
    }
    Py_ssize_t next = 0;   /* keys come in declaration order: search from after the last one */
    uint64_t oneofs = 0;
    for (;;) {
        const unsigned char *key;
        Py_ssize_t key_len;
        int plain;
        if (!string_ok(c, &key, &key_len, &plain) || !plain) return 0;
        const Field *f = NULL;
        for (Py_ssize_t i = next; i < schema->nfields; i++) {
            const Field *cand = &schema->fields[i];
            if (cand->key_len == key_len && memcmp(cand->key, key, (size_t)key_len) == 0) {
                f = cand;
                next = i + 1;
                break;
            }
        }
        if (f == NULL || f->kind == K_NEVER) return 0;
        if (f->oneof >= 0) {
            uint64_t bit = (uint64_t)1 << f->oneof;
            if (oneofs & bit) return 0;
            oneofs |= bit;
        }
        if (c->p >= c->end || *c->p != ':') return 0;
        c->p++;
        int falsy;
        if (f->repeated) {
            if (c->p >= c->end || *c->p != '[') return 0;
            c->p++;
            if (c->p < c->end && *c->p == ']') return 0;  /* an empty list is the default */
            for (;;) {
                if (!value_ok(c, f, depth, &falsy)) return 0;
                if (c->p >= c->end) return 0;
                if (*c->p == ']') {
                    c->p++;
                    break;
                }
                if (*c->p != ',') return 0;
                c->p++;
            }
        } else {
            if (!value_ok(c, f, depth, &falsy)) return 0;
            if (falsy && !f->falsy_ok) return 0;
        }
        if (first_end != NULL) {
            *first_end = c->p;
            first_end = NULL;
        }
        if (c->p >= c->end) return 0;
        if (*c->p == '}') {
            c->p++;
            return 1;
        }
        if (*c->p != ',') return 0;
        c->p++;
    }
}

/* -- the Schema type ------------------------------------------------------------------------- */

static void schema_clear_fields(Schema *self) {
    if (self->fields != NULL) {
        for (Py_ssize_t i = 0; i < self->nfields; i++) PyMem_Free(self->fields[i].names);
        PyMem_Free(self->fields);
    }
    self->fields = NULL;
    self->nfields = 0;
}

static int schema_traverse(Schema *self, visitproc visit, void *arg) {
    Py_VISIT(self->keep);
    return 0;
}

static int schema_clear(Schema *self) {
    schema_clear_fields(self);
    Py_CLEAR(self->keep);
    return 0;
}

static void schema_dealloc(Schema *self) {
    PyObject_GC_UnTrack(self);
    schema_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* setup(fields): fields is a tuple, in declaration order, of
 * (name: bytes, kind: int, repeated: bool, falsy_ok: bool, oneof: int, aux)
 * where aux is a tuple of allowed enum names (bytes, sorted) for K_ENUM, a Schema for
 * K_MESSAGE, and None otherwise. */
static PyObject *schema_setup(Schema *self, PyObject *args) {
    PyObject *fields;
    if (!PyArg_ParseTuple(args, "O!", &PyTuple_Type, &fields)) return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(fields);
    Field *out = PyMem_Calloc((size_t)(n ? n : 1), sizeof(Field));
    if (out == NULL) return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(fields, i);
        PyObject *name, *aux;
        int kind, repeated, falsy_ok, oneof;
        if (!PyArg_ParseTuple(item, "O!ippiO", &PyBytes_Type, &name, &kind, &repeated, &falsy_ok, &oneof, &aux))
            goto fail;
        Field *f = &out[i];
        f->key = PyBytes_AS_STRING(name);
        f->key_len = PyBytes_GET_SIZE(name);
        f->kind = kind;
        f->repeated = repeated;
        f->falsy_ok = falsy_ok;
        f->oneof = oneof;
        if (kind < K_NEVER || kind > K_MESSAGE || oneof < -1 || oneof >= MAX_ONEOFS) {
            PyErr_SetString(PyExc_ValueError, "bad field description");
            goto fail;
        }
        if (kind == K_ENUM) {
            if (!PyTuple_Check(aux)) {
                PyErr_SetString(PyExc_TypeError, "enum names must be a tuple of bytes");
                goto fail;
            }
            Py_ssize_t m = PyTuple_GET_SIZE(aux);
            f->names = PyMem_Calloc((size_t)(m ? m : 1), sizeof(Name));
            if (f->names == NULL) {
                PyErr_NoMemory();
                goto fail;
            }
            f->nnames = m;
            for (Py_ssize_t j = 0; j < m; j++) {
                PyObject *nm = PyTuple_GET_ITEM(aux, j);
                if (!PyBytes_Check(nm)) {
                    PyErr_SetString(PyExc_TypeError, "enum names must be bytes");
                    goto fail;
                }
                f->names[j].name = PyBytes_AS_STRING(nm);
                f->names[j].len = PyBytes_GET_SIZE(nm);
            }
        } else if (kind == K_MESSAGE) {
            if (!PyObject_TypeCheck(aux, &SchemaType)) {
                PyErr_SetString(PyExc_TypeError, "a message field needs its Schema");
                goto fail;
            }
            f->message = (Schema *)aux;
        }
    }
    schema_clear_fields(self);
    self->fields = out;
    self->nfields = n;
    Py_INCREF(fields);
    Py_XSETREF(self->keep, fields);
    Py_RETURN_NONE;
fail:
    for (Py_ssize_t i = 0; i < n; i++) PyMem_Free(out[i].names);
    PyMem_Free(out);
    return NULL;
}

/* prove(line) -> int: -1 when the line is not proven canonical; else the offset just past the
 * value of its first field (for an event {"flow":...}, where the flow object ends). */
static PyObject *schema_prove(Schema *self, PyObject *arg) {
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "prove() takes bytes");
        return NULL;
    }
    if (self->fields == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Schema.setup() was not called");
        return NULL;
    }
    const unsigned char *start = (const unsigned char *)PyBytes_AS_STRING(arg);
    Cursor c = {start, start + PyBytes_GET_SIZE(arg)};
    const unsigned char *first = NULL;
    if (!object_ok(&c, self, 0, &first) || c.p != c.end || first == NULL) return PyLong_FromLong(-1);
    Py_ssize_t first_end = first - start;
    return PyLong_FromSsize_t(first_end);
}

static PyMethodDef schema_methods[] = {
    {"setup", (PyCFunction)schema_setup, METH_VARARGS, "Describe the message's fields (once)."},
    {"prove", (PyCFunction)schema_prove, METH_O, "-1, or where the first value of a canonical line ends."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject SchemaType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "hushflow.flow._jsonpb_proof.Schema",
    .tp_basicsize = sizeof(Schema),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)schema_dealloc,
    .tp_traverse = (traverseproc)schema_traverse,
    .tp_clear = (inquiry)schema_clear,
    .tp_methods = schema_methods,
    .tp_doc = "One protobuf message type's JSON fields, for proving lines canonical.",
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "hushflow.flow._jsonpb_proof",
    "Prove a JSON line is already the canonical jsonpb bytes (see protojson.py).", -1, NULL,
};

PyMODINIT_FUNC PyInit__jsonpb_proof(void) {
    init_plain();
    if (PyType_Ready(&SchemaType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&SchemaType);
    if (PyModule_AddObject(m, "Schema", (PyObject *)&SchemaType) < 0) {
        Py_DECREF(&SchemaType);
        Py_DECREF(m);
        return NULL;
    }
    const struct { const char *name; int value; } kinds[] = {
        {"K_NEVER", K_NEVER}, {"K_STRING", K_STRING}, {"K_BOOL", K_BOOL}, {"K_ENUM", K_ENUM},
        {"K_INT32", K_INT32}, {"K_UINT32", K_UINT32}, {"K_INT64", K_INT64}, {"K_UINT64", K_UINT64},
        {"K_TIMESTAMP", K_TIMESTAMP}, {"K_MESSAGE", K_MESSAGE},
    };
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (PyModule_AddIntConstant(m, kinds[i].name, kinds[i].value) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    return m;
}
