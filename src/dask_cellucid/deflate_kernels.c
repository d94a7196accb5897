/*
 * Raw deflate streams of sparse genes, written from their stored values.
 *
 * The loops of dask_cellucid/formats/folder/sparse_gzip.py (see its docstring
 * for the format decisions): per gene, the symbol counts, a length-limited
 * Huffman code, the dynamic-block header and the bit stream, in work
 * proportional to the gene's stored values (plus ~300 symbols of code tables),
 * never to n_cells. Plain C over buffers, the GIL released while it runs.
 *
 * Python API:
 *   deflate_genes(payload, rows, indptr, n_cells, fills, itemsize) -> (bytes, bytes)
 *       payload: uint8, the stored values' little-endian bytes, itemsize a value;
 *       rows, indptr: int64; fills: uint8, itemsize bytes per gene.
 *       Returns every gene's raw deflate stream, concatenated, and the int64
 *       offsets (n_genes + 1) of each gene's stream in it. ValueError when a
 *       gene's rows are not sorted, distinct and within 0..n_cells-1.
 *   deflate_literals(data) -> bytes
 *       A raw deflate stream of data: one dynamic block of literals, no match
 *       search (or stored blocks, if smaller). For bytes where matches are
 *       rare (continuous float values) it is as small as a searching
 *       encoder's output at several times its speed.
 *   huffman_lengths(counts, max_bits, lengths) -> None
 *       int64 buffers: optimal code lengths limited to max_bits, written into
 *       lengths; a lone symbol gets an unused partner (the code stays complete);
 *       ties broken by symbol.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define N_LITLEN 286
#define EOB 256
#define MAX_BITS 15
#define MAX_CL_BITS 7
#define MAX_MATCH 258
#define MIN_MATCH 3
#define STORED_MAX 65535
#define N_CANDIDATES 5

static const int64_t RUN_MATCH_CANDIDATES[N_CANDIDATES] = {3, 4, 6, 8, 11};
static const int CL_ORDER[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
/* per match length 0..258 (3..258 used): symbol, extra-bit count and value */
static int LEN_SYM[MAX_MATCH + 1], LEN_NEXTRA[MAX_MATCH + 1], LEN_XVAL[MAX_MATCH + 1];
/* distance code of a match at distance 1, 2 or 4 (none has extra bits) */
static const int DIST_CODE[5] = {-1, 0, 1, -1, 3};

static void init_tables(void) {
    static const int extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                  2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
    int base[29];
    int b = 3;
    for (int i = 0; i < 28; i++) {
        base[i] = b;
        b += 1 << extra[i];
    }
    base[28] = 258;
    for (int len = 0; len <= MAX_MATCH; len++) {
        int idx = 0;
        for (int i = 0; i < 29; i++)
            if (base[i] <= len) idx = i;
        LEN_SYM[len] = 257 + idx;
        LEN_NEXTRA[len] = extra[idx];
        LEN_XVAL[len] = len >= 3 ? len - base[idx] : 0;
    }
}

/* -- Huffman codes ----------------------------------------------------------------- */

/* Moffat & Katajainen, "In-place calculation of minimum-redundancy codes" (1995):
 * ascending weights a[0..n-1] (n >= 2) become their code lengths. */
static void moffat_katajainen(int64_t *a, int64_t n) {
    int64_t root = 0, leaf = 2, nxt;
    a[0] += a[1];
    for (nxt = 1; nxt < n - 1; nxt++) {
        if (leaf >= n || a[root] < a[leaf]) {
            a[nxt] = a[root];
            a[root++] = nxt;
        } else {
            a[nxt] = a[leaf++];
        }
        if (leaf >= n || (root < nxt && a[root] < a[leaf])) {
            a[nxt] += a[root];
            a[root++] = nxt;
        } else {
            a[nxt] += a[leaf++];
        }
    }
    a[n - 2] = 0;
    for (nxt = n - 3; nxt >= 0; nxt--) a[nxt] = a[a[nxt]] + 1;
    int64_t avbl = 1, used = 0, depth = 0;
    root = n - 2;
    nxt = n - 1;
    while (avbl > 0) {
        while (root >= 0 && a[root] == depth) {
            used++;
            root--;
        }
        while (avbl > used) {
            a[nxt--] = depth;
            avbl--;
        }
        avbl = 2 * used;
        depth++;
        used = 0;
    }
}

static void shell_sort(int64_t *a, int64_t n) {
    static const int64_t gaps[6] = {132, 57, 23, 10, 4, 1};
    for (int g = 0; g < 6; g++) {
        int64_t gap = gaps[g];
        for (int64_t i = gap; i < n; i++) {
            int64_t v = a[i], j = i;
            while (j >= gap && a[j - gap] > v) {
                a[j] = a[j - gap];
                j -= gap;
            }
            a[j] = v;
        }
    }
}

/* Optimal code lengths of counts[0..n_sym-1] (n_sym <= N_LITLEN), limited to max_bits. */
static void huffman(const int64_t *counts, int n_sym, int max_bits, int64_t *lengths) {
    int64_t keys[N_LITLEN], a[N_LITLEN], bl[N_LITLEN + 1];
    int64_t n = 0;
    memset(lengths, 0, sizeof(int64_t) * n_sym);
    /* (count, symbol) in one number: sorted, symbols by weight, ties by symbol */
    for (int i = 0; i < n_sym; i++)
        if (counts[i] > 0) keys[n++] = counts[i] * n_sym + i;
    for (int i = 0; n < 2; i++) /* pad with the first unused symbols, weight 0 */
        if (counts[i] <= 0) keys[n++] = i;
    shell_sort(keys, n);
    for (int64_t i = 0; i < n; i++) a[i] = keys[i] / n_sym;
    moffat_katajainen(a, n);
    int64_t deepest = n > max_bits ? n : max_bits;
    memset(bl, 0, sizeof(int64_t) * (deepest + 1));
    for (int64_t i = 0; i < n; i++) bl[a[i]]++;
    if (a[0] > max_bits) { /* push the deep leaves up, then pay the Kraft excess back */
        for (int64_t d = max_bits + 1; d <= deepest; d++) {
            bl[max_bits] += bl[d];
            bl[d] = 0;
        }
        int64_t total = 0;
        for (int d = 1; d <= max_bits; d++) total += bl[d] << (max_bits - d);
        while (total != ((int64_t)1 << max_bits)) {
            bl[max_bits]--;
            for (int d = max_bits - 1; d > 0; d--) {
                if (bl[d] > 0) {
                    bl[d]--;
                    bl[d + 1] += 2;
                    break;
                }
            }
            total--;
        }
    }
    int64_t pos = 0;
    for (int d = max_bits; d > 0; d--)
        for (int64_t k = 0; k < bl[d]; k++) lengths[keys[pos++] % n_sym] = d;
}

/* Canonical codes of lengths (RFC 1951 3.2.2), bit-reversed for LSB-first packing. */
static void reversed_codes(const int64_t *lengths, int n, uint32_t *codes) {
    int64_t bl[MAX_BITS + 2] = {0}, nxt[MAX_BITS + 2] = {0};
    for (int i = 0; i < n; i++) bl[lengths[i]]++;
    bl[0] = 0;
    int64_t code = 0;
    for (int b = 1; b <= MAX_BITS; b++) {
        code = (code + bl[b - 1]) << 1;
        nxt[b] = code;
    }
    for (int i = 0; i < n; i++) {
        int len = (int)lengths[i];
        uint32_t r = 0;
        if (len) {
            int64_t c = nxt[len]++;
            for (int k = 0; k < len; k++) {
                r = (r << 1) | (uint32_t)(c & 1);
                c >>= 1;
            }
        }
        codes[i] = r;
    }
}

/* -- the header ---------------------------------------------------------------------- */
typedef struct {
    int64_t dist_len[4];
    int64_t seq[N_LITLEN + 4]; /* the code lengths sent */
    int cl_sym[N_LITLEN + 4];  /* them as code-length symbols */
    int cl_xval[N_LITLEN + 4];
    int64_t cl_len[19];
    int hlit, hdist, hclen, n_cl;
} Header;

static int cl_extra_bits(int s) { return s == 16 ? 2 : s == 17 ? 3 : s == 18 ? 7 : 0; }

static int rle_code_lengths(const int64_t *seq, int n, int *sym, int *xval) {
    int i = 0, k = 0;
    while (i < n) {
        int64_t v = seq[i];
        int run = 1;
        while (i + run < n && seq[i + run] == v) run++;
        i += run;
        if (v == 0) {
            while (run >= 11) {
                int r = run < 138 ? run : 138;
                sym[k] = 18;
                xval[k++] = r - 11;
                run -= r;
            }
            if (run >= 3) {
                sym[k] = 17;
                xval[k++] = run - 3;
                run = 0;
            }
        } else {
            sym[k] = (int)v;
            xval[k++] = 0;
            run--;
            while (run >= 3) {
                int r = run < 6 ? run : 6;
                sym[k] = 16;
                xval[k++] = r - 3;
                run -= r;
            }
        }
        while (run > 0) {
            sym[k] = (int)v;
            xval[k++] = 0;
            run--;
        }
    }
    return k;
}

/* A complete distance code: the period's code and one unused partner, one bit each. */
static void distance_lengths(int period, int64_t *dist_len) {
    int code = DIST_CODE[period];
    memset(dist_len, 0, sizeof(int64_t) * 4);
    dist_len[code] = 1;
    dist_len[code == 0 ? 1 : 0] = 1;
}

/* Plan the dynamic header of lit_len and h->dist_len; its size in bits. */
static int64_t plan_header(const int64_t *lit_len, Header *h) {
    int hlit = 257, hdist = 1;
    for (int i = N_LITLEN - 1; i > 256; i--)
        if (lit_len[i]) {
            hlit = i + 1;
            break;
        }
    for (int i = 3; i >= 0; i--)
        if (h->dist_len[i]) {
            hdist = i + 1;
            break;
        }
    memcpy(h->seq, lit_len, sizeof(int64_t) * hlit);
    memcpy(h->seq + hlit, h->dist_len, sizeof(int64_t) * hdist);
    h->n_cl = rle_code_lengths(h->seq, hlit + hdist, h->cl_sym, h->cl_xval);
    int64_t cl_counts[19] = {0};
    for (int i = 0; i < h->n_cl; i++) cl_counts[h->cl_sym[i]]++;
    huffman(cl_counts, 19, MAX_CL_BITS, h->cl_len);
    int hclen = 4;
    for (int i = 18; i > 3; i--)
        if (h->cl_len[CL_ORDER[i]]) {
            hclen = i + 1;
            break;
        }
    h->hlit = hlit;
    h->hdist = hdist;
    h->hclen = hclen;
    int64_t bits = 3 + 5 + 5 + 4 + 3 * hclen;
    for (int i = 0; i < h->n_cl; i++) bits += h->cl_len[h->cl_sym[i]] + cl_extra_bits(h->cl_sym[i]);
    return bits;
}

/* -- one gene: the plan ------------------------------------------------------------------ */
typedef struct {
    const uint8_t *payload; /* stored values' bytes, s a value */
    const int64_t *rows;
    int64_t a, b; /* the gene's stored values: [a, b) */
    int64_t n_cells;
    const uint8_t *fill; /* s bytes */
    int s, period;
} Gene;

static int period_of(const uint8_t *fill, int s) {
    for (int j = 1; j < s; j++)
        if (fill[j] != fill[0]) return s;
    return 1;
}

/* The counts every candidate threshold shares (runs whose match part is 3..10
 * bytes tallied in short_runs); -1 when the rows are not sorted, distinct and
 * within 0..n_cells-1. */
static int base_counts(const Gene *g, int64_t *counts, int64_t *short_runs, int64_t *n_match_out,
                       int64_t *xbits_out) {
    const int s = g->s, period = g->period;
    int64_t n_match = 0, n_full = 0, xbits = 0, literal_bytes = 0, n_runs = 0;
    int64_t prev = -1;
    memset(counts, 0, sizeof(int64_t) * N_LITLEN);
    memset(short_runs, 0, sizeof(int64_t) * 11);
    for (int64_t i = g->a; i <= g->b; i++) {
        int64_t r = i < g->b ? g->rows[i] : g->n_cells;
        if (r <= prev || r > g->n_cells) return -1;
        int64_t gap = (r - prev - 1) * s;
        prev = r;
        if (gap) {
            int64_t m = gap - period;
            if (m >= 11) {
                n_runs++;
                int64_t q = m / MAX_MATCH, rem = m - q * MAX_MATCH;
                if (rem == 0) {
                    n_full += q;
                    n_match += q;
                } else if (rem >= MIN_MATCH) {
                    n_full += q;
                    n_match += q + 1;
                    counts[LEN_SYM[rem]]++;
                    xbits += LEN_NEXTRA[rem];
                } else { /* 259 = 256 + 3, 260 = 257 + 3 */
                    int64_t first = MAX_MATCH + rem - MIN_MATCH;
                    n_full += q - 1;
                    n_match += q + 1;
                    counts[LEN_SYM[first]]++;
                    counts[LEN_SYM[MIN_MATCH]]++;
                    xbits += LEN_NEXTRA[first] + LEN_NEXTRA[MIN_MATCH];
                }
            } else if (m >= MIN_MATCH) {
                short_runs[m]++;
            } else {
                literal_bytes += gap;
            }
        }
        if (i < g->b) {
            const uint8_t *v = g->payload + i * s;
            for (int j = 0; j < s; j++) counts[v[j]]++;
        }
    }
    counts[EOB]++;
    counts[285] += n_full;
    if (period == 1) {
        counts[g->fill[0]] += literal_bytes + n_runs;
    } else {
        for (int j = 0; j < s; j++) counts[g->fill[j]] += literal_bytes / s + n_runs;
    }
    *n_match_out = n_match;
    *xbits_out = xbits;
    return 0;
}

/* base plus the short runs under threshold; adds to *n_match and *xbits */
static void threshold_counts(const Gene *g, const int64_t *base, const int64_t *short_runs,
                             int64_t threshold, int64_t *counts, int64_t *n_match,
                             int64_t *xbits) {
    const int s = g->s, period = g->period;
    memcpy(counts, base, sizeof(int64_t) * N_LITLEN);
    for (int m = MIN_MATCH; m < 11; m++) {
        int64_t h = short_runs[m];
        if (h == 0) continue;
        if (m >= threshold) {
            for (int j = 0; j < period; j++) counts[g->fill[j]] += h;
            counts[LEN_SYM[m]] += h;
            *n_match += h;
            *xbits += h * LEN_NEXTRA[m];
        } else if (period == 1) {
            counts[g->fill[0]] += h * (m + 1);
        } else {
            for (int j = 0; j < s; j++) counts[g->fill[j]] += h * ((m + period - j + s - 1) / s);
        }
    }
}

static double estimated_bits(const int64_t *counts) {
    int64_t total = 0;
    for (int i = 0; i < N_LITLEN; i++) total += counts[i];
    double bits = 0.0;
    for (int i = 0; i < N_LITLEN; i++)
        if (counts[i]) bits += (double)counts[i] * log2((double)total / (double)counts[i]);
    return bits;
}

/* The candidate threshold whose symbols have the least estimated size (first if tied). */
static int64_t choose_threshold(const Gene *g, const int64_t *base, const int64_t *short_runs,
                                int64_t *counts) {
    int64_t best_t = RUN_MATCH_CANDIDATES[0], last_sig = -1;
    double best = -1.0;
    for (int c = 0; c < N_CANDIDATES; c++) {
        int64_t t = RUN_MATCH_CANDIDATES[c], sig = 0;
        /* candidates that treat every short run alike give the same symbols */
        for (int64_t m = t; m < 11; m++) sig += short_runs[m];
        if (sig == last_sig) continue;
        if (last_sig == -1 && sig == 0) return t; /* no short run at all */
        last_sig = sig;
        int64_t n_match = 0, xbits = 0;
        threshold_counts(g, base, short_runs, t, counts, &n_match, &xbits);
        double bits = estimated_bits(counts) + (double)(xbits + n_match);
        if (best < 0 || bits < best) {
            best = bits;
            best_t = t;
        }
    }
    return best_t;
}

static int64_t stored_blocks_size(int64_t n_bytes) {
    int64_t blocks = (n_bytes + STORED_MAX - 1) / STORED_MAX;
    return n_bytes + 5 * (blocks > 1 ? blocks : 1);
}

/* A gene's threshold (-1: stored blocks are smaller; -2: bad rows) and its size in
 * bytes; its literal/length code lengths into lit_len. */
static int64_t plan_gene(const Gene *g, int64_t *lit_len, int64_t *size) {
    int64_t base[N_LITLEN], counts[N_LITLEN], short_runs[11];
    int64_t n_match = 0, xbits = 0;
    Header h;
    if (base_counts(g, base, short_runs, &n_match, &xbits) < 0) return -2;
    int64_t t = choose_threshold(g, base, short_runs, counts);
    threshold_counts(g, base, short_runs, t, counts, &n_match, &xbits);
    huffman(counts, N_LITLEN, MAX_BITS, lit_len);
    distance_lengths(g->period, h.dist_len);
    int64_t bits = plan_header(lit_len, &h) + xbits + n_match; /* one-bit distance codes */
    for (int i = 0; i < N_LITLEN; i++) bits += counts[i] * lit_len[i];
    int64_t stored = stored_blocks_size(g->n_cells * g->s), dynamic = (bits + 7) / 8;
    if (dynamic <= stored) {
        *size = dynamic;
        return t;
    }
    *size = stored;
    return -1;
}

/* -- one gene: the bits ------------------------------------------------------------------ */
typedef struct {
    uint8_t *out;
    int64_t pos;
    uint64_t acc;
    int n_acc;
} Bits;

/* Append the n <= 32 low bits of value, LSB first; store 32 bits at a time. */
static inline void put(Bits *w, uint64_t value, int n) {
    w->acc |= value << w->n_acc;
    w->n_acc += n;
    if (w->n_acc >= 32) {
        uint8_t *o = w->out + w->pos;
        o[0] = (uint8_t)w->acc;
        o[1] = (uint8_t)(w->acc >> 8);
        o[2] = (uint8_t)(w->acc >> 16);
        o[3] = (uint8_t)(w->acc >> 24);
        w->pos += 4;
        w->acc >>= 32;
        w->n_acc -= 32;
    }
}

/* A dynamic block's header: BFINAL=1, BTYPE=10, HLIT, HDIST, HCLEN, then the code lengths. */
static void put_header(Bits *w, const Header *h, const uint32_t *cl_code) {
    put(w, 1 | (2 << 1) | ((h->hlit - 257) << 3) | ((h->hdist - 1) << 8) | ((h->hclen - 4) << 13),
        17);
    for (int i = 0; i < h->hclen; i++) put(w, (uint64_t)h->cl_len[CL_ORDER[i]], 3);
    for (int i = 0; i < h->n_cl; i++) {
        int c = h->cl_sym[i];
        put(w, cl_code[c] | ((uint64_t)h->cl_xval[i] << h->cl_len[c]),
            (int)h->cl_len[c] + cl_extra_bits(c));
    }
}

/* Write out the last, partial bytes; the end position. */
static int64_t flush_bits(Bits *w) {
    while (w->n_acc > 0) {
        w->out[w->pos++] = (uint8_t)w->acc;
        w->acc >>= 8;
        w->n_acc -= 8;
    }
    return w->pos;
}

static int64_t write_dynamic(const Gene *g, int64_t threshold, const int64_t *lit_len,
                             uint8_t *out, int64_t pos) {
    const int s = g->s, period = g->period;
    Header h;
    uint32_t lit_code[N_LITLEN], dist_code[4], cl_code[19];
    uint64_t match_val[MAX_MATCH + 1];
    int match_len[MAX_MATCH + 1];
    Bits w = {out, pos, 0, 0};

    distance_lengths(period, h.dist_len);
    plan_header(lit_len, &h);
    reversed_codes(lit_len, N_LITLEN, lit_code);
    reversed_codes(h.dist_len, 4, dist_code);
    reversed_codes(h.cl_len, 19, cl_code);

    put_header(&w, &h, cl_code);

    /* a match as one token: its length code, extra bits and distance code */
    int dc = DIST_CODE[period];
    for (int len = MIN_MATCH; len <= MAX_MATCH; len++) {
        int sy = LEN_SYM[len], nx = LEN_NEXTRA[len];
        int ls = (int)lit_len[sy];
        match_val[len] = lit_code[sy] | ((uint64_t)LEN_XVAL[len] << ls) |
                         ((uint64_t)dist_code[dc] << (ls + nx));
        match_len[len] = ls + nx + (int)h.dist_len[dc];
    }
    const uint64_t f0_val = lit_code[g->fill[0]];
    const int f0_len = (int)lit_len[g->fill[0]];

    int64_t prev = -1;
    for (int64_t i = g->a; i <= g->b; i++) {
        int64_t r = i < g->b ? g->rows[i] : g->n_cells;
        int64_t gap = (r - prev - 1) * s;
        prev = r;
        if (gap) {
            int64_t m = gap - period;
            if (m >= threshold) {
                for (int j = 0; j < period; j++)
                    put(&w, lit_code[g->fill[j]], (int)lit_len[g->fill[j]]);
                int64_t q = m / MAX_MATCH, rem = m - q * MAX_MATCH;
                if (rem > 0 && rem < MIN_MATCH) { /* 259 = 256 + 3, 260 = 257 + 3 */
                    q--;
                    int64_t first = MAX_MATCH + rem - MIN_MATCH;
                    put(&w, match_val[first], match_len[first]);
                    rem = MIN_MATCH;
                }
                for (int64_t k = 0; k < q; k++) put(&w, match_val[MAX_MATCH], match_len[MAX_MATCH]);
                if (rem) put(&w, match_val[rem], match_len[rem]);
            } else if (period == 1) {
                for (int64_t k = 0; k < gap; k++) put(&w, f0_val, f0_len);
            } else {
                for (int64_t k = 0; k < gap; k++)
                    put(&w, lit_code[g->fill[k % s]], (int)lit_len[g->fill[k % s]]);
            }
        }
        if (i < g->b) {
            const uint8_t *v = g->payload + i * s;
            for (int j = 0; j < s; j++) put(&w, lit_code[v[j]], (int)lit_len[v[j]]);
        }
    }
    put(&w, lit_code[EOB], (int)lit_len[EOB]);
    return flush_bits(&w);
}

/* n_bytes of bytes as stored blocks at out + pos; the end. */
static int64_t stored_blocks(const uint8_t *bytes, int64_t n_bytes, uint8_t *out, int64_t pos) {
    int64_t start = 0;
    for (;;) {
        int64_t size = n_bytes - start < STORED_MAX ? n_bytes - start : STORED_MAX;
        int final = start + size >= n_bytes;
        out[pos] = (uint8_t)final;
        out[pos + 1] = (uint8_t)(size & 0xFF);
        out[pos + 2] = (uint8_t)(size >> 8);
        out[pos + 3] = (uint8_t)(~size & 0xFF);
        out[pos + 4] = (uint8_t)((~size >> 8) & 0xFF);
        pos += 5;
        memcpy(out + pos, bytes + start, size);
        pos += size;
        start += size;
        if (final) return pos;
    }
}

/* One gene's dense bytes (built in dense) as stored blocks at out + pos; the end. */
static int64_t write_stored(const Gene *g, uint8_t *dense, uint8_t *out, int64_t pos) {
    const int s = g->s;
    const int64_t n_bytes = g->n_cells * s;
    for (int64_t j = 0; j < n_bytes; j++) dense[j] = g->fill[j % s];
    for (int64_t i = g->a; i < g->b; i++) memcpy(dense + g->rows[i] * s, g->payload + i * s, s);
    return stored_blocks(dense, n_bytes, out, pos);
}

/* -- literals only (Huffman-only deflate) ------------------------------------------------------ */

/* data[0..n-1] as one dynamic block of literals (no match search); its size, or -1
 * when stored blocks would be smaller (the caller stores them). out must hold
 * at least n + 1,024 bytes. */
static int64_t write_literals(const uint8_t *data, int64_t n, uint8_t *out) {
    int64_t counts[N_LITLEN] = {0}, lit_len[N_LITLEN];
    uint32_t lit_code[N_LITLEN], dist_code[4], cl_code[19];
    Header h;
    for (int64_t i = 0; i < n; i++) counts[data[i]]++;
    counts[EOB] = 1;
    huffman(counts, N_LITLEN, MAX_BITS, lit_len);
    distance_lengths(1, h.dist_len);
    int64_t bits = plan_header(lit_len, &h);
    for (int i = 0; i < N_LITLEN; i++) bits += counts[i] * lit_len[i];
    if ((bits + 7) / 8 > stored_blocks_size(n)) return -1;
    reversed_codes(lit_len, N_LITLEN, lit_code);
    reversed_codes(h.dist_len, 4, dist_code);
    reversed_codes(h.cl_len, 19, cl_code);
    Bits w = {out, 0, 0, 0};
    put_header(&w, &h, cl_code);
    uint64_t code[256];
    int len[256];
    for (int b = 0; b < 256; b++) {
        code[b] = lit_code[b];
        len[b] = (int)lit_len[b];
    }
    for (int64_t i = 0; i < n; i++) put(&w, code[data[i]], len[data[i]]);
    put(&w, lit_code[EOB], (int)lit_len[EOB]);
    return flush_bits(&w);
}

/* -- Python ---------------------------------------------------------------------------------- */
static int get_buffer(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t itemsize,
                      const char *name) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    if (view->len % itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes is not a whole number of %zd-byte items",
                     name, view->len, itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *py_deflate_genes(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *o_payload, *o_rows, *o_indptr, *o_fills, *result = NULL;
    long long n_cells_ll;
    int s;
    if (!PyArg_ParseTuple(args, "OOOLOi", &o_payload, &o_rows, &o_indptr, &n_cells_ll, &o_fills,
                          &s))
        return NULL;
    if (s != 1 && s != 2 && s != 4) {
        PyErr_SetString(PyExc_ValueError, "itemsize must be 1, 2 or 4");
        return NULL;
    }
    Py_buffer payload, rows, indptr, fills;
    if (get_buffer(o_payload, &payload, 0, s, "payload") < 0) return NULL;
    if (get_buffer(o_rows, &rows, 0, 8, "rows") < 0) goto fail_rows;
    if (get_buffer(o_indptr, &indptr, 0, 8, "indptr") < 0) goto fail_indptr;
    if (get_buffer(o_fills, &fills, 0, s, "fills") < 0) goto fail_fills;

    const int64_t n_cells = (int64_t)n_cells_ll;
    const int64_t *ip = (const int64_t *)indptr.buf;
    const int64_t n_genes = indptr.len / 8 - 1;
    const int64_t n_stored = rows.len / 8;
    int64_t *lit_lens = NULL, *thresholds = NULL, *offsets = NULL;
    uint8_t *dense = NULL;
    if (n_genes < 0 || fills.len / s != n_genes || n_cells < 0 || payload.len / s < n_stored) {
        PyErr_SetString(PyExc_ValueError, "indptr, rows, payload and fills do not agree");
        goto done;
    }
    for (int64_t k = 0; k < n_genes; k++) {
        if (ip[k] < 0 || ip[k + 1] < ip[k] || ip[k + 1] > n_stored) {
            PyErr_SetString(PyExc_ValueError, "indptr does not describe rows");
            goto done;
        }
    }
    lit_lens = (int64_t *)malloc(sizeof(int64_t) * N_LITLEN * (n_genes ? n_genes : 1));
    thresholds = (int64_t *)malloc(sizeof(int64_t) * (n_genes ? n_genes : 1));
    offsets = (int64_t *)malloc(sizeof(int64_t) * (n_genes + 1));
    if (!lit_lens || !thresholds || !offsets) {
        PyErr_NoMemory();
        goto done;
    }
    int bad = 0, no_memory = 0;
    uint8_t *out = NULL;
    Py_BEGIN_ALLOW_THREADS;
    offsets[0] = 0;
    for (int64_t k = 0; k < n_genes && !bad; k++) {
        Gene g = {(const uint8_t *)payload.buf, (const int64_t *)rows.buf, ip[k], ip[k + 1],
                  n_cells, (const uint8_t *)fills.buf + k * s, s, 0};
        g.period = period_of(g.fill, s);
        int64_t size = 0;
        thresholds[k] = plan_gene(&g, lit_lens + k * N_LITLEN, &size);
        if (thresholds[k] == -2) bad = 1;
        offsets[k + 1] = offsets[k] + size;
    }
    if (!bad) {
        out = (uint8_t *)malloc(offsets[n_genes] ? offsets[n_genes] : 1);
        if (!out) no_memory = 1;
    }
    for (int64_t k = 0; k < n_genes && out; k++) {
        Gene g = {(const uint8_t *)payload.buf, (const int64_t *)rows.buf, ip[k], ip[k + 1],
                  n_cells, (const uint8_t *)fills.buf + k * s, s, 0};
        g.period = period_of(g.fill, s);
        int64_t end;
        if (thresholds[k] >= 0) {
            end = write_dynamic(&g, thresholds[k], lit_lens + k * N_LITLEN, out, offsets[k]);
        } else {
            if (!dense) dense = (uint8_t *)malloc(n_cells > 0 ? (size_t)(n_cells * s) : 1);
            if (!dense) {
                no_memory = 1;
                break;
            }
            end = write_stored(&g, dense, out, offsets[k]);
        }
        if (end != offsets[k + 1]) { /* a plan and its stream must agree */
            bad = 2;
            break;
        }
    }
    Py_END_ALLOW_THREADS;
    if (bad == 1) {
        PyErr_SetString(PyExc_ValueError,
                        "rows must be sorted, distinct and within 0..n_cells-1 in each gene");
    } else if (bad == 2) {
        PyErr_SetString(PyExc_AssertionError, "a deflate stream is not the size its plan gave");
    } else if (no_memory) {
        PyErr_NoMemory();
    } else {
        result = Py_BuildValue("(y#y#)", (const char *)out, (Py_ssize_t)offsets[n_genes],
                               (const char *)offsets, (Py_ssize_t)(8 * (n_genes + 1)));
    }
    free(out);
done:
    free(lit_lens);
    free(thresholds);
    free(offsets);
    free(dense);
    PyBuffer_Release(&fills);
fail_fills:
    PyBuffer_Release(&indptr);
fail_indptr:
    PyBuffer_Release(&rows);
fail_rows:
    PyBuffer_Release(&payload);
    return result;
}

static PyObject *py_deflate_literals(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *o_data, *result = NULL;
    if (!PyArg_ParseTuple(args, "O", &o_data)) return NULL;
    Py_buffer data;
    if (get_buffer(o_data, &data, 0, 1, "data") < 0) return NULL;
    const int64_t n = data.len;
    uint8_t *out = (uint8_t *)malloc((size_t)stored_blocks_size(n) + 1024);
    if (!out) {
        PyBuffer_Release(&data);
        return PyErr_NoMemory();
    }
    int64_t size;
    Py_BEGIN_ALLOW_THREADS;
    size = write_literals((const uint8_t *)data.buf, n, out);
    if (size < 0) size = stored_blocks((const uint8_t *)data.buf, n, out, 0); /* incompressible */
    Py_END_ALLOW_THREADS;
    result = PyBytes_FromStringAndSize((const char *)out, (Py_ssize_t)size);
    free(out);
    PyBuffer_Release(&data);
    return result;
}

static PyObject *py_huffman_lengths(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *o_counts, *o_lengths;
    int max_bits;
    if (!PyArg_ParseTuple(args, "OiO", &o_counts, &max_bits, &o_lengths)) return NULL;
    Py_buffer counts, lengths;
    if (get_buffer(o_counts, &counts, 0, 8, "counts") < 0) return NULL;
    if (get_buffer(o_lengths, &lengths, 1, 8, "lengths") < 0) {
        PyBuffer_Release(&counts);
        return NULL;
    }
    Py_ssize_t n = counts.len / 8;
    PyObject *result = NULL;
    if (n < 2 || n > N_LITLEN || lengths.len != counts.len || max_bits < 1 || max_bits > MAX_BITS) {
        PyErr_SetString(PyExc_ValueError,
                        "counts: 2 to 286 symbols, lengths of the same size, max_bits 1 to 15");
    } else {
        const int64_t *c = (const int64_t *)counts.buf;
        int used = 0;
        for (Py_ssize_t i = 0; i < n; i++) used += c[i] > 0;
        if (used > (1 << max_bits)) {
            PyErr_SetString(PyExc_ValueError, "more symbols than max_bits can code");
        } else {
            huffman(c, (int)n, max_bits, (int64_t *)lengths.buf);
            result = Py_None;
            Py_INCREF(result);
        }
    }
    PyBuffer_Release(&counts);
    PyBuffer_Release(&lengths);
    return result;
}

static PyMethodDef methods[] = {
    {"deflate_genes", py_deflate_genes, METH_VARARGS,
     "deflate_genes(payload, rows, indptr, n_cells, fills, itemsize) -> (streams, offsets)"},
    {"deflate_literals", py_deflate_literals, METH_VARARGS,
     "deflate_literals(data) -> bytes: raw deflate of data, literals only (no match search)"},
    {"huffman_lengths", py_huffman_lengths, METH_VARARGS,
     "huffman_lengths(counts, max_bits, lengths) -> None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "deflate_kernels",
    "Raw deflate streams of sparse genes, from their stored values (C).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit_deflate_kernels(void) {
    init_tables();
    return PyModule_Create(&module);
}
