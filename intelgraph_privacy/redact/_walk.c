/*
 * The redaction walk in C: an exact transcription of `_Walk` in mutate mode (apply.py), which
 * stays the reference. Tests run both walkers on the same generated responses and require
 * identical results (response, errors, redacted paths, counters).
 *
 * The plan arrives as nested tuples built by native.py:
 *   S = (only T | None, {typename: T}, typename_key | None)
 *   T = (allowed frozenset, plain (F, ...), work (F, ...), {key: position in plain + work})
 *   F = (key, code, nullable (bool, ...), child S | None, injected, opaque, slot, message,
 *        coordinate, band, transform, pseudonym cache | None)
 *
 * Every failure raises a Python exception; the caller then serves no data (fail closed).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>

enum { S_ONLY, S_BY_TYPE, S_TYPENAME, S_SIZE };
enum { T_ALLOWED, T_PLAIN, T_WORK, T_INDEX, T_SIZE };
enum {
    F_KEY, F_CODE, F_NULLABLE, F_CHILD, F_INJECTED, F_OPAQUE, F_SLOT, F_MESSAGE, F_COORD,
    F_BAND, F_TRANSFORM, F_CACHE, F_SIZE
};
enum { A_KEEP = 0, A_GENERALISE = 1, A_MASK = 2, A_HASH = 3, A_NULL = 4 };

#define MASK_VISIBLE 4

static PyObject *s_message, *s_path, *s_extensions, *s_code, *s_coordinate, *s_redacted_code,
    *s_unknown_type, *s_bad_upstream_code, *s_upstream_null;

/* One step of the current path: a dict key (borrowed from the plan or the response), or a
 * list index when key is NULL. Kept in a C array; a Python list is built only for an error. */
typedef struct {
    PyObject *key;
    Py_ssize_t index;
} Step;

/* Objects of one type in a response usually carry the same key objects in the same order
 * (orjson reuses key strings). Remembering, per position, the key object seen there and the
 * field it resolved to turns most lookups into a pointer comparison. The hint holds a strong
 * reference to each key, so an address cannot be reused by another string during the walk. */
typedef struct {
    PyObject *T; /* borrowed: the plan outlives the walk */
    Py_ssize_t capacity;
    PyObject **key_at;
    Py_ssize_t *field_at;
} Hint;

typedef struct {
    Py_ssize_t *counts;
    Py_ssize_t n_counts;
    PyObject *errors;   /* list of error dicts */
    PyObject *redacted; /* list of paths (lists) */
    Step *steps;        /* the current path, used as a stack */
    Py_ssize_t depth;
    Py_ssize_t capacity;
    Py_ssize_t unknown;
    /* Per walk: one error template per field slot ({"message", "path", "extensions"}, the
     * extensions dict shared by that field's errors in this response), and the list indices
     * already made into ints (errors repeat them). */
    PyObject **templates;
    PyObject **indices;
    Py_ssize_t n_indices;
    /* Per walk and per type plan: key objects by position (see Hint). */
    Hint *hints;
    Py_ssize_t n_hints;
} Ctx;

static int
check_tuple(PyObject *o, Py_ssize_t size, const char *what)
{
    if (!PyTuple_CheckExact(o) || PyTuple_GET_SIZE(o) != size) {
        PyErr_Format(PyExc_TypeError, "malformed native plan: bad %s", what);
        return -1;
    }
    return 0;
}

static inline int
is_scalar(PyObject *v)
{
    return v == Py_None || PyUnicode_CheckExact(v) || PyLong_CheckExact(v) ||
           PyFloat_CheckExact(v) || PyBool_Check(v);
}

static inline int
nullable_at(PyObject *F, Py_ssize_t level)
{
    return PyTuple_GET_ITEM(PyTuple_GET_ITEM(F, F_NULLABLE), level) == Py_True;
}

static inline Py_ssize_t
depth_of(PyObject *F)
{
    return PyTuple_GET_SIZE(PyTuple_GET_ITEM(F, F_NULLABLE));
}

static int
count(Ctx *c, PyObject *F, int nulled)
{
    Py_ssize_t slot = PyLong_AsSsize_t(PyTuple_GET_ITEM(F, F_SLOT));
    if (slot == -1 && PyErr_Occurred())
        return -1;
    Py_ssize_t index = 2 * slot + (nulled ? 1 : 0);
    if (slot < 0 || index >= c->n_counts) {
        PyErr_SetString(PyExc_ValueError, "malformed native plan: slot out of range");
        return -1;
    }
    c->counts[index]++;
    return 0;
}

static int
push_step(Ctx *c, PyObject *key, Py_ssize_t index)
{
    if (c->depth == c->capacity) {
        Py_ssize_t capacity = c->capacity ? 2 * c->capacity : 32;
        Step *grown = PyMem_Realloc(c->steps, (size_t)capacity * sizeof(Step));
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        c->steps = grown;
        c->capacity = capacity;
    }
    c->steps[c->depth].key = key;
    c->steps[c->depth].index = index;
    c->depth++;
    return 0;
}

static inline int
push(Ctx *c, PyObject *key)
{
    return push_step(c, key, -1);
}

static inline int
push_index(Ctx *c, Py_ssize_t i)
{
    return push_step(c, NULL, i);
}

static inline int
pop(Ctx *c)
{
    c->depth--;
    return 0;
}

static PyObject *
index_object(Ctx *c, Py_ssize_t index)
{
    if (index >= c->n_indices) {
        Py_ssize_t size = c->n_indices ? c->n_indices : 64;
        while (size <= index)
            size *= 2;
        PyObject **grown = PyMem_Realloc(c->indices, (size_t)size * sizeof(PyObject *));
        if (grown == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        for (Py_ssize_t i = c->n_indices; i < size; i++)
            grown[i] = NULL;
        c->indices = grown;
        c->n_indices = size;
    }
    if (c->indices[index] == NULL && (c->indices[index] = PyLong_FromSsize_t(index)) == NULL)
        return NULL;
    return Py_NewRef(c->indices[index]);
}

/* The current path as a new Python list. */
static PyObject *
path_list(Ctx *c)
{
    PyObject *path = PyList_New(c->depth);
    if (path == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < c->depth; i++) {
        PyObject *step = c->steps[i].key != NULL ? Py_NewRef(c->steps[i].key)
                                                 : index_object(c, c->steps[i].index);
        if (step == NULL) {
            Py_DECREF(path);
            return NULL;
        }
        PyList_SET_ITEM(path, i, step);
    }
    return path;
}

/* Record a redacted path (the current one) and its error entry, a copy of `template` (a
 * dict {"message": ..., "path": None, "extensions": ...}) with the path filled in. */
static int
record_error(Ctx *c, PyObject *template)
{
    PyObject *path = path_list(c);
    if (path == NULL)
        return -1;
    PyObject *err = NULL;
    int r = -1;
    if (PyList_Append(c->redacted, path) < 0)
        goto done;
    err = PyDict_Copy(template);
    if (err == NULL || PyDict_SetItem(err, s_path, path) < 0)
        goto done;
    r = PyList_Append(c->errors, err);
done:
    Py_DECREF(path);
    Py_XDECREF(err);
    return r;
}

/* {"message": message, "path": None, "extensions": {"code": "REDACTED"[, "coordinate": c]}}:
 * a new reference. */
static PyObject *
new_template(PyObject *message, PyObject *coordinate)
{
    PyObject *ext = PyDict_New();
    PyObject *template = PyDict_New();
    if (ext == NULL || template == NULL || PyDict_SetItem(ext, s_code, s_redacted_code) < 0 ||
        (coordinate != NULL && PyDict_SetItem(ext, s_coordinate, coordinate) < 0) ||
        PyDict_SetItem(template, s_message, message) < 0 ||
        PyDict_SetItem(template, s_path, Py_None) < 0 ||
        PyDict_SetItem(template, s_extensions, ext) < 0) {
        Py_XDECREF(ext);
        Py_XDECREF(template);
        return NULL;
    }
    Py_DECREF(ext);
    return template;
}

static int
null_field(Ctx *c, PyObject *F)
{
    if (count(c, F, 1) < 0)
        return -1;
    Py_ssize_t slot = PyLong_AsSsize_t(PyTuple_GET_ITEM(F, F_SLOT));
    if (c->templates[slot] == NULL &&
        (c->templates[slot] = new_template(PyTuple_GET_ITEM(F, F_MESSAGE),
                                           PyTuple_GET_ITEM(F, F_COORD))) == NULL)
        return -1;
    return record_error(c, c->templates[slot]);
}

/* As `null_field`, with `key` pushed on the path for the duration. */
static int
null_field_at(Ctx *c, PyObject *F, PyObject *key)
{
    if (push(c, key) < 0)
        return -1;
    int r = null_field(c, F);
    if (pop(c) < 0)
        return -1;
    return r;
}

/* A null where the schema says non-null: a BAD_UPSTREAM error at the current path (it will
 * propagate like a redacted null; the path is not a redacted one). */
static int
upstream_null(Ctx *c, PyObject *F)
{
    PyObject *path = path_list(c);
    PyObject *ext = PyDict_New();
    PyObject *err = PyDict_New();
    int r = -1;
    if (path == NULL || ext == NULL || err == NULL ||
        PyDict_SetItem(ext, s_code, s_bad_upstream_code) < 0 ||
        PyDict_SetItem(ext, s_coordinate, PyTuple_GET_ITEM(F, F_COORD)) < 0 ||
        PyDict_SetItem(err, s_message, s_upstream_null) < 0 ||
        PyDict_SetItem(err, s_path, path) < 0 || PyDict_SetItem(err, s_extensions, ext) < 0)
        goto done;
    r = PyList_Append(c->errors, err);
done:
    Py_XDECREF(path);
    Py_XDECREF(ext);
    Py_XDECREF(err);
    return r;
}

static int
upstream_null_at(Ctx *c, PyObject *F, PyObject *key)
{
    if (push(c, key) < 0)
        return -1;
    int r = upstream_null(c, F);
    pop(c);
    return r;
}

/* Null obj[key] with its error: 1 when the object stands, 0 when it must become null. */
static int
null_key(Ctx *c, PyObject *obj, PyObject *F, PyObject *key)
{
    if (null_field_at(c, F, key) < 0 || PyDict_SetItem(obj, key, Py_None) < 0)
        return -1;
    return nullable_at(F, 0);
}

static inline int
is_separator(Py_UCS4 ch)
{
    switch (ch) {
    case '-': case '.': case '@': case ' ': case '+': case '(': case ')': case '/': case ':':
    case '_':
        return 1;
    default:
        return 0;
    }
}

/* mask(): every character but separators becomes '*', except the last 4 of a string of 8+. */
static PyObject *
mask_string(PyObject *value)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    Py_ssize_t visible = n >= 2 * MASK_VISIBLE ? MASK_VISIBLE : 0;
    Py_ssize_t cut = n - visible;
    int kind = PyUnicode_KIND(value);
    const void *data = PyUnicode_DATA(value);
    /* The result must be built with its exact widest character (CPython's canonical form). */
    Py_UCS4 widest = '*';
    for (Py_ssize_t i = cut; i < n; i++) {
        Py_UCS4 ch = PyUnicode_READ(kind, data, i);
        if (ch > widest)
            widest = ch;
    }
    PyObject *out = PyUnicode_New(n, widest);
    if (out == NULL)
        return NULL;
    int out_kind = PyUnicode_KIND(out);
    void *out_data = PyUnicode_DATA(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 ch = PyUnicode_READ(kind, data, i);
        PyUnicode_WRITE(out_kind, out_data, i, (i >= cut || is_separator(ch)) ? ch : '*');
    }
    return out;
}

static PyObject *
call_transform(PyObject *F, PyObject *value)
{
    PyObject *transform = PyTuple_GET_ITEM(F, F_TRANSFORM);
    if (transform == Py_None) {
        PyErr_SetString(PyExc_ValueError, "malformed native plan: transform missing");
        return NULL;
    }
    return PyObject_CallOneArg(transform, value);
}

/* The field's transform applied to a scalar: a new reference; Py_None when it cannot. */
static PyObject *
transform(PyObject *F, long code, PyObject *value)
{
    if (code == A_MASK) {
        if (!PyUnicode_CheckExact(value))
            Py_RETURN_NONE;
        return mask_string(value);
    }
    if (code == A_HASH) {
        if (!PyUnicode_CheckExact(value) && !PyLong_CheckExact(value))
            Py_RETURN_NONE;
        PyObject *cache = PyTuple_GET_ITEM(F, F_CACHE);
        if (PyDict_CheckExact(cache)) {
            PyObject *hit = PyDict_GetItemWithError(cache, value);
            if (hit != NULL)
                return Py_NewRef(hit);
            if (PyErr_Occurred())
                return NULL;
        }
        return call_transform(F, value);
    }
    if (code == A_GENERALISE) {
        double band = PyFloat_AsDouble(PyTuple_GET_ITEM(F, F_BAND));
        if (band == -1.0 && PyErr_Occurred())
            return NULL;
        if (PyFloat_CheckExact(value)) {
            double scaled = PyFloat_AS_DOUBLE(value) / band;
            if (!isfinite(scaled))
                Py_RETURN_NONE;
            double start = floor(scaled);
            if (start == 0.0)
                start = 0.0; /* Python's math.floor gives the int 0, never -0.0 */
            return PyFloat_FromDouble(start * band);
        }
        if (PyLong_CheckExact(value) && band == floor(band) && band >= 1.0 && band < 1e15) {
            PyObject *step = PyLong_FromDouble(band);
            if (step == NULL)
                return NULL;
            PyObject *quotient = PyNumber_FloorDivide(value, step);
            PyObject *out = quotient ? PyNumber_Multiply(quotient, step) : NULL;
            Py_XDECREF(quotient);
            Py_DECREF(step);
            return out;
        }
        return call_transform(F, value);
    }
    PyErr_Format(PyExc_ValueError, "malformed native plan: no transform for code %ld", code);
    return NULL;
}

static int walk_object(Ctx *c, PyObject *obj, PyObject *S);

static Hint *
hint_for(Ctx *c, PyObject *T)
{
    /* Most objects in a row share a type plan: look at the last one first. */
    for (Py_ssize_t i = c->n_hints - 1; i >= 0; i--)
        if (c->hints[i].T == T)
            return &c->hints[i];
    Hint *grown = PyMem_Realloc(c->hints, (size_t)(c->n_hints + 1) * sizeof(Hint));
    if (grown == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    c->hints = grown;
    /* First sight of this type plan in the walk: validate its field tuples once. */
    for (int part = T_PLAIN; part <= T_WORK; part++) {
        PyObject *fields = PyTuple_GET_ITEM(T, part);
        if (!PyTuple_CheckExact(fields)) {
            PyErr_SetString(PyExc_TypeError, "malformed native plan: bad field list");
            return NULL;
        }
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(fields); i++)
            if (check_tuple(PyTuple_GET_ITEM(fields, i), F_SIZE, "field plan") < 0)
                return NULL;
    }
    if (!PyDict_CheckExact(PyTuple_GET_ITEM(T, T_INDEX))) {
        PyErr_SetString(PyExc_TypeError, "malformed native plan: bad key index");
        return NULL;
    }
    Hint *h = &c->hints[c->n_hints++];
    h->T = T;
    h->capacity = 0;
    h->key_at = NULL;
    h->field_at = NULL;
    return h;
}

static void
free_hints(Ctx *c)
{
    for (Py_ssize_t i = 0; i < c->n_hints; i++) {
        Hint *h = &c->hints[i];
        for (Py_ssize_t p = 0; p < h->capacity; p++)
            Py_XDECREF(h->key_at[p]);
        PyMem_Free(h->key_at);
        PyMem_Free(h->field_at);
    }
    PyMem_Free(c->hints);
}

static int
grow_hint(Hint *h, Py_ssize_t position)
{
    Py_ssize_t capacity = h->capacity ? 2 * h->capacity : 16;
    while (capacity <= position)
        capacity *= 2;
    PyObject **keys = PyMem_Realloc(h->key_at, (size_t)capacity * sizeof(PyObject *));
    if (keys == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    h->key_at = keys;
    Py_ssize_t *fields = PyMem_Realloc(h->field_at, (size_t)capacity * sizeof(Py_ssize_t));
    if (fields == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    h->field_at = fields;
    for (Py_ssize_t p = h->capacity; p < capacity; p++) {
        h->key_at[p] = NULL;
        h->field_at[p] = -1;
    }
    h->capacity = capacity;
    return 0;
}

/* Which planned field (position in plain + work) the key at `position` of an object of type
 * plan T is: -1 when the plan does not know it, -2 on error. */
static Py_ssize_t
key_field(Hint *h, PyObject *T, Py_ssize_t position, PyObject *key)
{
    if (position < h->capacity && h->key_at[position] == key)
        return h->field_at[position];
    PyObject *found = PyDict_GetItemWithError(PyTuple_GET_ITEM(T, T_INDEX), key);
    if (found == NULL && PyErr_Occurred())
        return -2;
    Py_ssize_t field = found != NULL ? PyLong_AsSsize_t(found) : -1;
    if (field == -1 && PyErr_Occurred())
        return -2;
    if (position >= h->capacity && grow_hint(h, position) < 0)
        return -2;
    Py_XSETREF(h->key_at[position], Py_NewRef(key));
    h->field_at[position] = field;
    return field;
}

/* The value at one position of a field: a new reference to its replacement. */
static PyObject *
walk_value(Ctx *c, PyObject *value, PyObject *F, Py_ssize_t level, int *good)
{
    int nullable = nullable_at(F, level);
    if (value == Py_None) {
        if (!nullable && upstream_null(c, F) < 0)
            return NULL;
        *good = nullable;
        Py_RETURN_NONE;
    }
    if (level < depth_of(F) - 1) {
        if (!PyList_CheckExact(value)) {
            if (null_field(c, F) < 0)
                return NULL;
            *good = nullable;
            Py_RETURN_NONE;
        }
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(value); i++) {
            PyObject *item = Py_NewRef(PyList_GET_ITEM(value, i));
            int ok = 1;
            PyObject *replacement = NULL;
            if (push_index(c, i) == 0) {
                replacement = walk_value(c, item, F, level + 1, &ok);
                if (pop(c) < 0)
                    Py_CLEAR(replacement);
            }
            if (replacement == NULL) {
                Py_DECREF(item);
                return NULL;
            }
            if (!ok) {
                Py_DECREF(item);
                Py_DECREF(replacement);
                *good = nullable;
                Py_RETURN_NONE;
            }
            if (replacement != item) {
                if (i >= PyList_GET_SIZE(value)) {
                    Py_DECREF(item);
                    Py_DECREF(replacement);
                    PyErr_SetString(PyExc_RuntimeError, "response list changed during walk");
                    return NULL;
                }
                PyList_SetItem(value, i, replacement); /* steals replacement */
            }
            else {
                Py_DECREF(replacement);
            }
            Py_DECREF(item);
        }
        *good = 1;
        return Py_NewRef(value);
    }
    PyObject *child = PyTuple_GET_ITEM(F, F_CHILD);
    if (child != Py_None) {
        if (!PyDict_CheckExact(value)) {
            if (null_field(c, F) < 0)
                return NULL;
            *good = nullable;
            Py_RETURN_NONE;
        }
        int r = walk_object(c, value, child);
        if (r < 0)
            return NULL;
        if (r) {
            *good = 1;
            return Py_NewRef(value);
        }
        *good = nullable;
        Py_RETURN_NONE;
    }
    if (PyTuple_GET_ITEM(F, F_OPAQUE) == Py_True) {
        *good = 1;
        return Py_NewRef(value);
    }
    long code = PyLong_AsLong(PyTuple_GET_ITEM(F, F_CODE));
    if (code == -1 && PyErr_Occurred())
        return NULL;
    if (code == A_KEEP) {
        if (is_scalar(value)) {
            *good = 1;
            return Py_NewRef(value);
        }
        if (null_field(c, F) < 0)
            return NULL;
        *good = nullable;
        Py_RETURN_NONE;
    }
    PyObject *replacement = is_scalar(value) ? transform(F, code, value) : Py_NewRef(Py_None);
    if (replacement == NULL)
        return NULL;
    if (replacement == Py_None) {
        Py_DECREF(replacement);
        if (null_field(c, F) < 0)
            return NULL;
        *good = nullable;
        Py_RETURN_NONE;
    }
    if (count(c, F, 0) < 0) {
        Py_DECREF(replacement);
        return NULL;
    }
    *good = 1;
    return replacement;
}

static int
drop_unknown_keys(Ctx *c, PyObject *obj, PyObject *allowed)
{
    PyObject *unknown = NULL, *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(obj, &pos, &key, &value)) {
        int known = PySet_Contains(allowed, key);
        if (known < 0)
            goto fail;
        if (!known) {
            if (unknown == NULL && (unknown = PyList_New(0)) == NULL)
                goto fail;
            if (PyList_Append(unknown, key) < 0)
                goto fail;
        }
    }
    if (unknown == NULL)
        return 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(unknown); i++) {
        key = PyList_GET_ITEM(unknown, i);
        c->unknown++;
        if (push(c, key) < 0)
            goto fail;
        PyObject *path = path_list(c);
        int r = path ? PyList_Append(c->redacted, path) : -1;
        Py_XDECREF(path);
        if (pop(c) < 0 || r < 0 || PyDict_DelItem(obj, key) < 0)
            goto fail;
    }
    Py_DECREF(unknown);
    return 0;
fail:
    Py_XDECREF(unknown);
    return -1;
}

/* Rewrite one object: 1 when it stands, 0 when it must become null, -1 on error. */
static int
walk_object_inner(Ctx *c, PyObject *obj, PyObject *S)
{
    if (check_tuple(S, S_SIZE, "selection") < 0)
        return -1;
    PyObject *T = PyTuple_GET_ITEM(S, S_ONLY);
    if (T == Py_None) {
        PyObject *typename = PyDict_GetItemWithError(obj, PyTuple_GET_ITEM(S, S_TYPENAME));
        T = NULL;
        if (typename == NULL && PyErr_Occurred())
            return -1;
        if (typename != NULL && PyUnicode_CheckExact(typename)) {
            T = PyDict_GetItemWithError(PyTuple_GET_ITEM(S, S_BY_TYPE), typename);
            if (T == NULL && PyErr_Occurred())
                return -1;
        }
        if (T == NULL) {
            /* Unknown or missing concrete type: the plan cannot vouch for any key. */
            c->unknown++;
            PyObject *template = new_template(s_unknown_type, NULL);
            int r = template == NULL ? -1 : record_error(c, template);
            Py_XDECREF(template);
            return r < 0 ? -1 : 0;
        }
    }
    if (check_tuple(T, T_SIZE, "type plan") < 0)
        return -1;
    PyObject *plain = PyTuple_GET_ITEM(T, T_PLAIN);
    PyObject *work = PyTuple_GET_ITEM(T, T_WORK);
    Py_ssize_t n_plain = PyTuple_GET_SIZE(plain), n_work = PyTuple_GET_SIZE(work);
    Py_ssize_t n = n_plain + n_work;
    /* One pass over the object's items: each key resolves to its planned field (by pointer
     * through the hint, else by lookup); values and the object's own key objects are kept,
     * so writes back hit by identity. */
    Hint *hint = hint_for(c, T);
    if (hint == NULL)
        return -1;
    PyObject *on_stack[128];
    PyObject **values = n <= 64 ? on_stack : PyMem_Calloc((size_t)(2 * n), sizeof(PyObject *));
    if (values == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    PyObject **keys = values + n;
    for (Py_ssize_t i = 0; i < 2 * n; i++)
        values[i] = NULL;
    int result = -1, unknown_keys = 0;
    PyObject *key, *item;
    Py_ssize_t pos = 0, position = 0;
    while (PyDict_Next(obj, &pos, &key, &item)) {
        if (!PyUnicode_CheckExact(key)) {
            /* Decoded JSON has str keys only; anything else could run code while we hold
             * borrowed references. Refuse (the caller serves no data). */
            PyErr_SetString(PyExc_TypeError, "response object keys must be str");
            goto done;
        }
        Py_ssize_t field = key_field(hint, T, position++, key);
        if (field == -2)
            goto done;
        if (field < 0 || field >= n) {
            unknown_keys = 1;
            continue;
        }
        values[field] = Py_NewRef(item);
        keys[field] = Py_NewRef(key);
    }
    if (unknown_keys && drop_unknown_keys(c, obj, PyTuple_GET_ITEM(T, T_ALLOWED)) < 0)
        goto done;

    int ok = 1;
    for (Py_ssize_t i = 0; i < n_plain; i++) {
        PyObject *F = PyTuple_GET_ITEM(plain, i);
        PyObject *key = keys[i];
        PyObject *value = values[i];
        if (value == NULL)
            continue;
        if (value == Py_None) {
            if (!nullable_at(F, 0)) {
                if (upstream_null_at(c, F, key) < 0)
                    goto done;
                ok = 0;
            }
            continue;
        }
        if (is_scalar(value))
            continue;
        if (null_field_at(c, F, key) < 0 || PyDict_SetItem(obj, key, Py_None) < 0)
            goto done;
        ok = ok && nullable_at(F, 0);
    }
    if (!ok) {
        result = 0;
        goto done;
    }

    for (Py_ssize_t i = 0; i < n_work; i++) {
        PyObject *F = PyTuple_GET_ITEM(work, i);
        PyObject *key = keys[n_plain + i];
        PyObject *value = values[n_plain + i];
        if (value == NULL)
            continue;
        if (PyTuple_GET_ITEM(F, F_INJECTED) == Py_True) {
            if (PyDict_DelItem(obj, key) < 0)
                goto done;
            continue;
        }
        long code = PyLong_AsLong(PyTuple_GET_ITEM(F, F_CODE));
        if (code == -1 && PyErr_Occurred())
            goto done;
        if (code == A_NULL) {
            int stands = null_key(c, obj, F, key);
            if (stands != 1) {
                result = stands;
                goto done;
            }
            continue;
        }
        if (PyTuple_GET_ITEM(F, F_OPAQUE) == Py_True)
            continue;
        if (PyTuple_GET_ITEM(F, F_CHILD) == Py_None && depth_of(F) == 1) {
            /* A leaf with a transform (kept leaves are plain keys). */
            if (value == Py_None) {
                if (!nullable_at(F, 0)) {
                    result = upstream_null_at(c, F, key) < 0 ? -1 : 0;
                    goto done;
                }
                continue;
            }
            PyObject *replacement =
                is_scalar(value) ? transform(F, code, value) : Py_NewRef(Py_None);
            if (replacement == NULL)
                goto done;
            if (replacement == Py_None) {
                Py_DECREF(replacement);
                int stands = null_key(c, obj, F, key);
                if (stands != 1) {
                    result = stands;
                    goto done;
                }
                continue;
            }
            int r = count(c, F, 0) < 0 ? -1 : PyDict_SetItem(obj, key, replacement);
            Py_DECREF(replacement);
            if (r < 0)
                goto done;
            continue;
        }
        int good = 1;
        PyObject *replacement = NULL;
        if (push(c, key) == 0) {
            replacement = walk_value(c, value, F, 0, &good);
            pop(c);
        }
        if (replacement == NULL)
            goto done;
        int r = replacement != value ? PyDict_SetItem(obj, key, replacement) : 0;
        Py_DECREF(replacement);
        if (r < 0)
            goto done;
        if (!good) {
            result = 0;
            goto done;
        }
    }
    result = 1;
done:
    for (Py_ssize_t i = 0; i < 2 * n; i++)
        Py_XDECREF(values[i]);
    if (values != on_stack)
        PyMem_Free(values);
    return result;
}

static int
walk_object(Ctx *c, PyObject *obj, PyObject *S)
{
    if (Py_EnterRecursiveCall(" while redacting a response"))
        return -1;
    int r = walk_object_inner(c, obj, S);
    Py_LeaveRecursiveCall();
    return r;
}

PyDoc_STRVAR(walk_doc,
             "walk(data, plan, slots) -> (ok, unknown, {counter: n}, errors, redacted)\n\n"
             "Rewrite `data` in place with a native plan (see native.py).");

static PyObject *
walk(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *data, *plan;
    Py_ssize_t slots;
    if (!PyArg_ParseTuple(args, "O!O!n:walk", &PyDict_Type, &data, &PyTuple_Type, &plan, &slots))
        return NULL;
    if (slots < 0 || slots > PY_SSIZE_T_MAX / 4) {
        PyErr_SetString(PyExc_ValueError, "slots out of range");
        return NULL;
    }
    Ctx c = {0};
    c.n_counts = 2 * slots;
    c.counts = PyMem_Calloc((size_t)(c.n_counts > 0 ? c.n_counts : 1), sizeof(Py_ssize_t));
    c.errors = PyList_New(0);
    c.redacted = PyList_New(0);
    c.templates = PyMem_Calloc((size_t)(slots > 0 ? slots : 1), sizeof(PyObject *));
    PyObject *result = NULL, *counts = NULL;
    if (c.counts == NULL || c.templates == NULL || c.errors == NULL || c.redacted == NULL) {
        if (c.counts == NULL || c.templates == NULL)
            PyErr_NoMemory();
        goto done;
    }
    int ok = walk_object(&c, data, plan);
    if (ok < 0)
        goto done;
    counts = PyDict_New();
    if (counts == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < c.n_counts; i++) {
        if (c.counts[i] == 0)
            continue;
        PyObject *index = PyLong_FromSsize_t(i);
        PyObject *n = PyLong_FromSsize_t(c.counts[i]);
        int r = (index && n) ? PyDict_SetItem(counts, index, n) : -1;
        Py_XDECREF(index);
        Py_XDECREF(n);
        if (r < 0)
            goto done;
    }
    result = Py_BuildValue("(OnOOO)", ok ? Py_True : Py_False, c.unknown, counts, c.errors,
                           c.redacted);
done:
    PyMem_Free(c.counts);
    Py_XDECREF(counts);
    Py_XDECREF(c.errors);
    Py_XDECREF(c.redacted);
    PyMem_Free(c.steps);
    if (c.templates != NULL) {
        for (Py_ssize_t i = 0; i < slots; i++)
            Py_XDECREF(c.templates[i]);
        PyMem_Free(c.templates);
    }
    for (Py_ssize_t i = 0; i < c.n_indices; i++)
        Py_XDECREF(c.indices[i]);
    PyMem_Free(c.indices);
    free_hints(&c);
    return result;
}

static PyObject *
mask(PyObject *Py_UNUSED(module), PyObject *value)
{
    if (!PyUnicode_CheckExact(value))
        Py_RETURN_NONE;
    return mask_string(value);
}

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS, walk_doc},
    {"mask", mask, METH_O, "The C mask transform (for tests against the Python one)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_walk", "The native redaction walk (see apply.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

static int
intern(PyObject **target, const char *text)
{
    *target = PyUnicode_InternFromString(text);
    return *target == NULL ? -1 : 0;
}

PyMODINIT_FUNC
PyInit__walk(void)
{
    if (intern(&s_message, "message") < 0 || intern(&s_path, "path") < 0 ||
        intern(&s_extensions, "extensions") < 0 || intern(&s_code, "code") < 0 ||
        intern(&s_coordinate, "coordinate") < 0 || intern(&s_redacted_code, "REDACTED") < 0 ||
        intern(&s_unknown_type, "object of unknown type redacted") < 0 ||
        intern(&s_bad_upstream_code, "BAD_UPSTREAM") < 0 ||
        intern(&s_upstream_null, "the upstream returned null for a non-null field") < 0)
        return NULL;
    return PyModule_Create(&module);
}
