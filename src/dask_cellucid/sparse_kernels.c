/*
 * A column group of a CSR matrix as CSC, in one count and one scatter (C).
 *
 * Python API:
 *   csc_from_row_ranges(starts, ends, indices, data, col_lo, n_cols,
 *                       out_indptr, out_indices, out_data) -> None
 *       Row r's entries of the group are positions starts[r]..ends[r]-1 of the
 *       CSR matrix's indices and data, their columns col_lo..col_lo+n_cols-1.
 *       Writes the group's CSC: out_indptr (int64, n_cols + 1), out_indices
 *       (rows, the dtype of indices) and out_data (the dtype of data), rows
 *       increasing within each column. starts and ends are int64; indices are
 *       int32 or int64 (told by their buffers' item sizes); data is any
 *       1, 2, 4 or 8-byte type. ValueError if a column is outside the group or
 *       the outputs do not hold the entries. The GIL is released.
 *
 * It replaces a strided row slice, scipy's tocsc and sum_duplicates (three
 * passes and two temporary copies) for inputs already in canonical form.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int get(PyObject *obj, Py_buffer *view, int writable) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    return PyObject_GetBuffer(obj, view, flags);
}

#define SCATTER(IDX_T, VAL_T)                                                            \
    do {                                                                                 \
        const IDX_T *idx = (const IDX_T *)indices.buf;                                   \
        const VAL_T *val = (const VAL_T *)data.buf;                                      \
        IDX_T *oidx = (IDX_T *)out_indices.buf;                                          \
        VAL_T *oval = (VAL_T *)out_data.buf;                                             \
        for (int64_t r = 0; r < n_rows && !bad; r++) {                                   \
            for (int64_t p = st[r]; p < en[r]; p++) {                                    \
                int64_t c = (int64_t)idx[p] - col_lo;                                    \
                int64_t at = next[c]++;                                                  \
                oidx[at] = (IDX_T)r;                                                     \
                oval[at] = val[p];                                                       \
            }                                                                            \
        }                                                                                \
    } while (0)

static PyObject *py_csc_from_row_ranges(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *o_starts, *o_ends, *o_indices, *o_data, *o_indptr, *o_oidx, *o_odata;
    long long col_lo_ll, n_cols_ll;
    if (!PyArg_ParseTuple(args, "OOOOLLOOO", &o_starts, &o_ends, &o_indices, &o_data, &col_lo_ll,
                          &n_cols_ll, &o_indptr, &o_oidx, &o_odata))
        return NULL;
    Py_buffer starts, ends, indices, data, out_indptr, out_indices, out_data;
    PyObject *result = NULL;
    int got = 0;
    if (get(o_starts, &starts, 0) < 0) goto release;
    got++;
    if (get(o_ends, &ends, 0) < 0) goto release;
    got++;
    if (get(o_indices, &indices, 0) < 0) goto release;
    got++;
    if (get(o_data, &data, 0) < 0) goto release;
    got++;
    if (get(o_indptr, &out_indptr, 1) < 0) goto release;
    got++;
    if (get(o_oidx, &out_indices, 1) < 0) goto release;
    got++;
    if (get(o_odata, &out_data, 1) < 0) goto release;
    got++;

    const int64_t col_lo = (int64_t)col_lo_ll, n_cols = (int64_t)n_cols_ll;
    const int64_t n_rows = starts.len / 8;
    const Py_ssize_t isz = indices.itemsize, dsz = data.itemsize;
    if (starts.itemsize != 8 || ends.itemsize != 8 || ends.len != starts.len ||
        out_indptr.itemsize != 8 || out_indptr.len / 8 != n_cols + 1 || n_cols < 0 ||
        (isz != 4 && isz != 8) || out_indices.itemsize != isz ||
        (dsz != 1 && dsz != 2 && dsz != 4 && dsz != 8) || out_data.itemsize != dsz ||
        out_indices.len / isz != out_data.len / dsz) {
        PyErr_SetString(PyExc_ValueError, "csc_from_row_ranges: arguments of the wrong shape or type");
        goto release;
    }
    const int64_t *st = (const int64_t *)starts.buf, *en = (const int64_t *)ends.buf;
    const int64_t n_in = indices.len / isz, n_out = out_indices.len / isz;
    int64_t *indptr = (int64_t *)out_indptr.buf;
    int64_t *next = (int64_t *)malloc(sizeof(int64_t) * (size_t)(n_cols + 1));
    if (!next) {
        PyErr_NoMemory();
        goto release;
    }
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS;
    memset(indptr, 0, sizeof(int64_t) * (size_t)(n_cols + 1));
    int64_t total = 0;
    for (int64_t r = 0; r < n_rows && !bad; r++) {
        if (st[r] < 0 || en[r] < st[r] || en[r] > n_in || en[r] > data.len / dsz) {
            bad = 1;
            break;
        }
        for (int64_t p = st[r]; p < en[r]; p++) {
            int64_t c = (isz == 4 ? (int64_t)((const int32_t *)indices.buf)[p]
                                  : ((const int64_t *)indices.buf)[p]) - col_lo;
            if (c < 0 || c >= n_cols) {
                bad = 2;
                break;
            }
            indptr[c + 1]++;
        }
        total += en[r] - st[r];
    }
    if (!bad && total != n_out) bad = 3;
    if (!bad) {
        for (int64_t c = 0; c < n_cols; c++) indptr[c + 1] += indptr[c];
        memcpy(next, indptr, sizeof(int64_t) * (size_t)n_cols);
        if (isz == 4) {
            switch (dsz) {
                case 1: SCATTER(int32_t, uint8_t); break;
                case 2: SCATTER(int32_t, uint16_t); break;
                case 4: SCATTER(int32_t, uint32_t); break;
                default: SCATTER(int32_t, uint64_t); break;
            }
        } else {
            switch (dsz) {
                case 1: SCATTER(int64_t, uint8_t); break;
                case 2: SCATTER(int64_t, uint16_t); break;
                case 4: SCATTER(int64_t, uint32_t); break;
                default: SCATTER(int64_t, uint64_t); break;
            }
        }
    }
    Py_END_ALLOW_THREADS;
    free(next);
    if (bad == 1) {
        PyErr_SetString(PyExc_ValueError, "csc_from_row_ranges: a row range is outside the arrays");
    } else if (bad == 2) {
        PyErr_SetString(PyExc_ValueError, "csc_from_row_ranges: a column is outside the group");
    } else if (bad == 3) {
        PyErr_SetString(PyExc_ValueError,
                        "csc_from_row_ranges: the outputs do not hold the group's entries");
    } else {
        result = Py_None;
        Py_INCREF(result);
    }
release:
    if (got > 6) PyBuffer_Release(&out_data);
    if (got > 5) PyBuffer_Release(&out_indices);
    if (got > 4) PyBuffer_Release(&out_indptr);
    if (got > 3) PyBuffer_Release(&data);
    if (got > 2) PyBuffer_Release(&indices);
    if (got > 1) PyBuffer_Release(&ends);
    if (got > 0) PyBuffer_Release(&starts);
    return result;
}

static PyMethodDef methods[] = {
    {"csc_from_row_ranges", py_csc_from_row_ranges, METH_VARARGS,
     "csc_from_row_ranges(starts, ends, indices, data, col_lo, n_cols, out_indptr, "
     "out_indices, out_data) -> None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "sparse_kernels",
    "A column group of a CSR matrix as CSC, in one count and one scatter (C).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit_sparse_kernels(void) { return PyModule_Create(&module); }
