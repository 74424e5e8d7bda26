/* hb_protocol.c - MLPerf Tiny / EEMBC performance-mode serial protocol, hilbench extensions.
 *
 * Written for hilbench from the protocol description in docs/SERIAL_PROTOCOL.md. Plain C99: no heap,
 * no stdio (numbers are formatted here), so it builds unchanged with any embedded toolchain.
 * Board access goes through port.h, the model through hb_model.h.
 *
 * Host -> device: ASCII commands terminated by '%' (CR/LF ignored), at most 80 characters.
 * Device -> host: lines ending "\r\n"; every command is answered by a final "m-ready" line.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "hb_config.h"
#include "hb_model.h"
#include "hb_protocol.h"
#include "port.h"

#ifndef HB_PROFILE /* 1: per-operator profiler compiled in (hb_profile.h, `hb-profile%`) */
#define HB_PROFILE 0
#endif
#if HB_PROFILE
#include "hb_profile.h"
#endif

#ifndef HB_DUT_NAME
#define HB_DUT_NAME "hilbench-dut"
#endif
#ifndef HB_PROFILE_STRING
#define HB_PROFILE_STRING "hilbench-fw/1"
#endif
#ifndef HB_DB_BUFFER_BYTES
#define HB_DB_BUFFER_BYTES 1024
#endif
#ifndef HB_ENERGY_MODE
#define HB_ENERGY_MODE 0
#endif
#ifndef HB_DBBIN_TIMEOUT_US /* max gap between two raw bytes of hb-dbbin */
#define HB_DBBIN_TIMEOUT_US 1000000u
#endif
#ifndef HB_MARKER_HOLD_US /* energy mode: how long the timestamp pin is held low */
#define HB_MARKER_HOLD_US 10u
#endif
#ifndef HB_PORT_TIMER_CYCLES /* 1: the port's time base is a cycle counter (port.h, (b)) */
#define HB_PORT_TIMER_CYCLES 0
#endif
#ifndef HB_IO_CONVENTION /* what db load carries and m-results reports (hb_protocol.h) */
#define HB_IO_CONVENTION HB_IO_TENSOR
#endif
#if HB_IO_CONVENTION == HB_IO_FLOAT32_MSE
#define HB_WIRE_BYTES_PER_ELEMENT 4u /* float32 per int8 input element */
#else
#define HB_WIRE_BYTES_PER_ELEMENT 1u
#endif
#ifndef HB_TENSOR_BUFFER_BYTES /* the converted input tensor (conventions other than HB_IO_TENSOR) */
#define HB_TENSOR_BUFFER_BYTES (HB_DB_BUFFER_BYTES / HB_WIRE_BYTES_PER_ELEMENT)
#endif

#define HB_CMD_MAX 80
#define HB_MAX_ARGS 4

static uint8_t s_db[HB_DB_BUFFER_BYTES];
static size_t s_db_expect; /* bytes announced by `db load` (0: none) */
static size_t s_db_have;   /* bytes received so far */

static char s_cmd[HB_CMD_MAX + 1];
static size_t s_cmd_len;
static int s_cmd_overflow;

static int s_model_status = -1; /* result of hb_model_init() */
static int s_have_results;

/* ------------------------------------------------------------------------------------------- output */

static void out(const char *s) { hb_port_uart_write(s, strlen(s)); }

static void out_line(const char *s)
{
    out(s);
    hb_port_uart_write("\r\n", 2);
}

static void out_ready(void) { out_line("m-ready"); }

static void out_u64(uint64_t v)
{
    char buf[21];
    int i = 20;
    buf[i] = '\0';
    do {
        buf[--i] = (char)('0' + (int)(v % 10u));
        v /= 10u;
    } while (v != 0u);
    out(buf + i);
}

static void out_error(const char *msg)
{
    out("e-[");
    out(msg);
    out_line("]");
}

/* "e-[<msg> <n><msg2>]" */
static void out_error_n(const char *msg, uint64_t n, const char *msg2)
{
    out("e-[");
    out(msg);
    out_u64(n);
    out(msg2);
    out_line("]");
}

/* printf("%0.3f") equivalent: the float is widened to double (exact), scaled by 1000 (exact below
 * 2^43) and rounded half-to-even like a correctly rounding printf. */
static void out_fixed3(float value)
{
    double x = (double)value;
    if (x != x) {
        out("nan");
        return;
    }
    if (x < 0.0) {
        out("-");
        x = -x;
    }
    if (x > 1.8e16) {
        out("inf");
        return;
    }
    x *= 1000.0;
    uint64_t r = (uint64_t)x; /* floor for x >= 0 */
    double frac = x - (double)r;
    if (frac > 0.5 || (frac == 0.5 && (r & 1u))) {
        r += 1u;
    }
    out_u64(r / 1000u);
    char buf[5];
    uint32_t f = (uint32_t)(r % 1000u);
    buf[0] = '.';
    buf[1] = (char)('0' + f / 100u);
    buf[2] = (char)('0' + (f / 10u) % 10u);
    buf[3] = (char)('0' + f % 10u);
    buf[4] = '\0';
    out(buf);
}

static void out_hex_byte(uint8_t b)
{
    static const char digits[] = "0123456789abcdef";
    char buf[3] = {digits[b >> 4], digits[b & 15u], '\0'};
    out(buf);
}

/* ------------------------------------------------------------------------------------------- time */

static uint32_t s_last32;
static uint64_t s_high;

/* The port's wrapping 32-bit counter extended to 64 bits; must be called at least once per wrap
 * (2^32 us, or 2^32 cycles with HB_PORT_TIMER_CYCLES): it is, after every inference and in every
 * poll. An idle board that missed a wrap only shifts the absolute value: T0 and T1 of one window
 * are both extended from reads inside that window, so laps stay right. */
static uint64_t ticks64(void)
{
#if HB_PORT_TIMER_CYCLES
    uint32_t t = hb_port_cycles();
#else
    uint32_t t = hb_port_timer_us();
#endif
    if (t < s_last32) {
        s_high += (uint64_t)1u << 32;
    }
    s_last32 = t;
    return s_high | t;
}

/* Microseconds since boot (64 bits: they do not wrap). */
static uint64_t now_us(void)
{
#if HB_PORT_TIMER_CYCLES
    uint64_t cycles = ticks64();
    uint64_t hz = hb_port_cycles_hz();
    if (hz == 0u) {
        return 0u;
    }
    return (cycles / hz) * 1000000u + ((cycles % hz) * 1000000u) / hz; /* no overflow for 584 years */
#else
    return ticks64();
#endif
}

static void timestamp(void)
{
#if HB_ENERGY_MODE
    /* The energy monitor counts falling edges: pull low, hold, release. */
    hb_port_gpio_marker(0);
    uint64_t t0 = now_us();
    while (now_us() - t0 < HB_MARKER_HOLD_US) {
    }
    hb_port_gpio_marker(1);
#else
    uint64_t t = now_us();
    out("m-lap-us-");
    out_u64(t);
    out("\r\n");
#endif
}

/* ------------------------------------------------------------------------------------------- parsing */

/* Decimal unsigned integer; returns 0 on success. */
static int parse_uint(const char *s, uint64_t *value)
{
    uint64_t v = 0;
    if (s == NULL || *s == '\0') {
        return -1;
    }
    for (; *s; ++s) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9u) / 10u) {
            return -1;
        }
        v = v * 10u + (uint64_t)(*s - '0');
    }
    *value = v;
    return 0;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int parse_hex32(const char *s, uint32_t *value)
{
    uint32_t v = 0;
    int n = 0;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        s += 2;
    }
    for (; *s; ++s, ++n) {
        int h = hex_value(*s);
        if (h < 0 || n >= 8) {
            return -1;
        }
        v = (v << 4) | (uint32_t)h;
    }
    if (n == 0) {
        return -1;
    }
    *value = v;
    return 0;
}

/* Split s_cmd in place at spaces. */
static int split_args(char *line, char **argv)
{
    int argc = 0;
    char *p = line;
    while (*p && argc < HB_MAX_ARGS) {
        while (*p == ' ') *p++ = '\0';
        if (!*p) break;
        argv[argc++] = p;
        while (*p && *p != ' ') ++p;
    }
    while (*p == ' ') *p++ = '\0';
    return *p ? -1 : argc; /* -1: too many arguments */
}

/* ------------------------------------------------------------------------------------------- CRC32 */

/* IEEE 802.3 CRC-32 (reflected, polynomial 0xEDB88320), as zlib.crc32; bitwise to save flash. */
static uint32_t crc32_update(uint32_t crc, uint8_t byte)
{
    crc ^= byte;
    for (int k = 0; k < 8; ++k) {
        crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return crc;
}

/* ------------------------------------------------------------------------------------------- profiler */

#if HB_PROFILE
/* The inference whose outputs `infer` reports, with the per-operator recorder armed around it. */
static int profiled_invoke(void)
{
    hb_profile_arm();
    int rc = hb_model_invoke();
    hb_profile_disarm(rc == 0);
    return rc;
}

/* An operator tag as a protocol token: anything but [A-Za-z0-9_.] (a custom op's name may hold
 * commas or brackets) becomes '_'. */
static void out_tag(const char *tag)
{
    char c[2] = {'\0', '\0'};
    if (tag == NULL || *tag == '\0') {
        out("UNKNOWN");
        return;
    }
    for (; *tag; ++tag) {
        char ch = *tag;
        int ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' ||
                 ch == '.';
        c[0] = ok ? ch : '_';
        out(c);
    }
}

/* hb-profile: one m-hb-op-[INDEX,TAG,TICKS] line per operator of the last profiled inference, then
 * m-hb-profile-done-[ops=N,lost=L,invoke=T,hz=H,clock=cycles|us]. */
static void cmd_op_profile(void)
{
    if (!hb_profile_ready()) {
        out_error("hb-profile: no profiled inference yet (run infer first)");
        return;
    }
    size_t n = hb_profile_count();
    for (size_t i = 0; i < n; ++i) {
        out("m-hb-op-[");
        out_u64(i);
        out(",");
        out_tag(hb_profile_tag(i));
        out(",");
        out_u64(hb_profile_op_ticks(i));
        out_line("]");
    }
    out("m-hb-profile-done-[ops=");
    out_u64(n);
    out(",lost=");
    out_u64(hb_profile_lost());
    out(",invoke=");
    out_u64(hb_profile_invoke_ticks());
    out(",hz=");
    out_u64(hb_profile_ticks_per_second());
#if HB_PORT_TIMER_CYCLES
    out_line(",clock=cycles]");
#else
    out_line(",clock=us]");
#endif
}
#endif

/* ------------------------------------------------------------------------------------------- commands */

static void cmd_name(void)
{
    out("m-name-dut-[");
    out(HB_DUT_NAME);
    out_line("]");
}

static void cmd_profile(void)
{
    out("m-profile-[");
    out(HB_PROFILE_STRING);
    out_line("]");
    out("m-model-[");
    out(hb_model_id());
    out_line("]");
}

static void cmd_db(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "load") == 0) {
        uint64_t n;
        s_db_expect = s_db_have = 0;
        if (argc != 3 || parse_uint(argv[2], &n) != 0 || n == 0u) {
            out_error("db load needs a byte count > 0");
        } else if (n > HB_DB_BUFFER_BYTES) {
            out_error_n("db load ", n, " bytes exceeds the input buffer");
        } else {
            s_db_expect = (size_t)n;
            out("m-[Expecting ");
            out_u64(n);
            out_line(" bytes]");
        }
        return;
    }
    if (argc == 2 && strcmp(argv[1], "print") == 0) {
        for (size_t i = 0; i < s_db_have; i += 8u) {
            out("m-buffer");
            for (size_t j = i; j < s_db_have && j < i + 8u; ++j) {
                out("-");
                out_hex_byte(s_db[j]);
            }
            out("\r\n");
        }
        return;
    }
    if (argc != 2) {
        out_error("db: expected 'db load N', 'db print' or 'db HEX'");
        return;
    }
    if (s_db_expect == 0u) {
        out_error("db: no load in progress (send db load N first)");
        return;
    }
    const char *hex = argv[1];
    size_t len = strlen(hex);
    if (len % 2u != 0u) {
        out_error("db: odd number of hex digits");
        return;
    }
    if (s_db_have + len / 2u > s_db_expect) {
        out_error("db: more bytes than announced by db load");
        return;
    }
    for (size_t i = 0; i < len; i += 2u) {
        int hi = hex_value(hex[i]), lo = hex_value(hex[i + 1u]);
        if (hi < 0 || lo < 0) {
            out_error("db: not a hex digit");
            return;
        }
        s_db[s_db_have + i / 2u] = (uint8_t)((hi << 4) | lo);
    }
    s_db_have += len / 2u;
    if (s_db_have == s_db_expect) {
        out_line("m-load-done");
    }
}

/* ------------------------------------------------------------------------------------------- I/O conventions */

/* Bytes of one input on the wire (`db load N`). */
static size_t wire_bytes(void) { return hb_model_input_bytes() * HB_WIRE_BYTES_PER_ELEMENT; }

#if HB_IO_CONVENTION != HB_IO_TENSOR
static uint8_t s_tensor[HB_TENSOR_BUFFER_BYTES];
#endif

#if HB_IO_CONVENTION == HB_IO_FLOAT32_MSE
static float wire_float(size_t i)
{
    float x;
    memcpy(&x, s_db + 4u * i, sizeof x); /* little-endian float32, like every Cortex-M and Xtensa */
    return x;
}

/* round(x / scale) + zero_point, half away from zero, clamped to int8 (MLPerf's QuantizeFloatToInt8) */
static int8_t quantize_int8(float x, float scale, int32_t zero_point)
{
    float v = x / scale;
    double d = (double)v;
    if (d != d) {
        d = 0.0;
    }
    if (d > 1.0e6) {
        d = 1.0e6;
    } else if (d < -1.0e6) {
        d = -1.0e6;
    }
    int64_t r = d >= 0.0 ? (int64_t)(d + 0.5) : -(int64_t)(-d + 0.5);
    r += zero_point;
    return (int8_t)(r < -128 ? -128 : (r > 127 ? 127 : r));
}
#endif

/* The input tensor's bytes made of the wire bytes in s_db (once per infer). */
static const uint8_t *tensor_input(void)
{
#if HB_IO_CONVENTION == HB_IO_UINT8_MINUS_128
    for (size_t i = 0; i < s_db_have; ++i) {
        s_tensor[i] = (uint8_t)(s_db[i] ^ 0x80u); /* (int8_t)(u - 128) */
    }
    return s_tensor;
#elif HB_IO_CONVENTION == HB_IO_FLOAT32_MSE
    float scale = 0.0f;
    int32_t zero_point = 0;
    size_t n = s_db_have / 4u;
    if (hb_model_input_quant(&scale, &zero_point) != 0 || scale == 0.0f) {
        return NULL;
    }
    for (size_t i = 0; i < n; ++i) {
        s_tensor[i] = (uint8_t)quantize_int8(wire_float(i), scale, zero_point);
    }
    return s_tensor;
#else
    return s_db;
#endif
}

static void print_results(void)
{
#if HB_IO_CONVENTION == HB_IO_FLOAT32_MSE
    /* one value: the mean squared difference of output 0 against the float input (MLPerf ad01) */
    size_t n = hb_model_output_count();
    float diffsum = 0.0f;
    for (size_t i = 0; i < n; ++i) {
        float diff = hb_model_output(i) - wire_float(i);
        diffsum += diff * diff;
    }
    out("m-results-[");
    out_fixed3(n ? diffsum / (float)n : 0.0f);
    out_line("]");
#else
    size_t n = hb_model_output_count();
    out("m-results-[");
    for (size_t i = 0; i < n; ++i) {
        if (i) out(",");
        out_fixed3(hb_model_output(i));
    }
    out_line("]");
#endif
}

static int input_ready(void)
{
    size_t need = wire_bytes();
    if (s_model_status != 0) {
        out_error("model not initialised");
        return 0;
    }
    if (s_db_expect != need || s_db_have != need) {
        out("e-[input incomplete: have ");
        out_u64(s_db_have);
        out(" of ");
        out_u64(need);
        out_line(" bytes; send db load first]");
        return 0;
    }
    return 1;
}

static void cmd_infer(int argc, char **argv)
{
    uint64_t n = 1, w = 10; /* defaults as in the reference firmware */
    if ((argc >= 2 && parse_uint(argv[1], &n) != 0) || (argc >= 3 && parse_uint(argv[2], &w) != 0) ||
        argc > 3 || n == 0u) {
        out_error("infer: usage infer N [W] with N >= 1");
        return;
    }
    if (!input_ready()) {
        return;
    }
    const uint8_t *input = tensor_input();
    size_t len = hb_model_input_bytes();
    if (input == NULL) {
        out_error("the model input has no quantisation for float32 inputs");
        return;
    }
    out("m-warmup-start-");
    out_u64(w);
    out("\r\n");
    if (hb_model_load_input(input, len) != 0) {
        out_error("loading the input tensor failed");
        return;
    }
    for (uint64_t i = 0; i < w; ++i) {
        if (hb_model_invoke() != 0) {
            out_error("invoke failed during warm-up");
            return;
        }
        (void)ticks64();
    }
    out_line("m-warmup-done");
    out("m-infer-start-");
    out_u64(n);
    out("\r\n");
    if (hb_model_load_input(input, len) != 0) {
        out_error("loading the input tensor failed");
        return;
    }
    int rc = 0;
    timestamp();
    for (uint64_t i = 0; i < n; ++i) {
        rc |= hb_model_invoke();
        (void)ticks64(); /* keeps the 64-bit time extension current in long windows */
    }
    timestamp();
    out_line("m-infer-done");
    if (rc != 0) {
        out_error("invoke failed");
        s_have_results = 0;
        return;
    }
    /* The reported outputs come from one more, untimed inference on a freshly loaded input (the one
     * hb-profile reports, in a build with the profiler). */
#if HB_PROFILE
    if (hb_model_load_input(input, len) != 0 || profiled_invoke() != 0) {
#else
    if (hb_model_load_input(input, len) != 0 || hb_model_invoke() != 0) {
#endif
        out_error("invoke failed");
        s_have_results = 0;
        return;
    }
    s_have_results = 1;
    print_results();
}

static void cmd_results(void)
{
    if (!s_have_results) {
        out_error("no results (run infer first)");
        return;
    }
    print_results();
}

static void cmd_caps(void)
{
    size_t used, size;
    out("m-hb-caps-[");
    if (s_model_status == 0 && hb_model_arena(&used, &size) == 0) {
        out("arena,");
    }
#if HB_PROFILE
    out_line("dbbin,profile]");
#else
    out_line("dbbin]");
#endif
}

static void cmd_arena(void)
{
    size_t used, size;
    if (s_model_status != 0 || hb_model_arena(&used, &size) != 0) {
        out_error("hb-arena: no arena information");
        return;
    }
    out("m-hb-arena-[used=");
    out_u64(used);
    out(",size=");
    out_u64(size);
    out_line("]");
}

/* hb-dbbin N CRC: checked first (refused with e-[...] before any byte is sent), then the device says
 * m-hb-dbbin-go and reads exactly N raw bytes (giving up after HB_DBBIN_TIMEOUT_US of silence),
 * then m-hb-dbbin-ok or e-[hb-dbbin crc mismatch]. */
static void cmd_dbbin(int argc, char **argv)
{
    uint64_t n = 0;
    uint32_t want = 0;
    if (argc != 3 || parse_uint(argv[1], &n) != 0 || parse_hex32(argv[2], &want) != 0 || n == 0u ||
        n > HB_DB_BUFFER_BYTES) {
        out_error_n("hb-dbbin bad arguments (N must be 1..", HB_DB_BUFFER_BYTES, ", CRC32 hex)");
        return;
    }
    s_db_expect = s_db_have = 0;
    out_line("m-hb-dbbin-go");
    uint32_t crc = 0xFFFFFFFFu;
    size_t got = 0;
    uint64_t last = now_us();
    while (got < n) {
        int c = hb_port_uart_read_byte();
        if (c < 0) {
            if (now_us() - last > HB_DBBIN_TIMEOUT_US) {
                out_error("hb-dbbin timeout");
                return;
            }
            hb_port_idle();
            continue;
        }
        last = now_us();
        s_db[got++] = (uint8_t)c;
        crc = crc32_update(crc, (uint8_t)c);
    }
    if ((crc ^ 0xFFFFFFFFu) != want) {
        out_error("hb-dbbin crc mismatch");
        return;
    }
    s_db_expect = s_db_have = (size_t)n;
    out_line("m-hb-dbbin-ok");
}

static void execute(char *line)
{
    char *argv[HB_MAX_ARGS];
    int argc = split_args(line, argv);
    if (argc < 0) {
        out_error("too many arguments");
    } else if (argc == 0) {
        /* empty command: just m-ready */
    } else if (strcmp(argv[0], "name") == 0) {
        cmd_name();
    } else if (strcmp(argv[0], "profile") == 0) {
        cmd_profile();
    } else if (strcmp(argv[0], "db") == 0) {
        cmd_db(argc, argv);
    } else if (strcmp(argv[0], "infer") == 0) {
        cmd_infer(argc, argv);
    } else if (strcmp(argv[0], "results") == 0) {
        cmd_results();
    } else if (strcmp(argv[0], "timestamp") == 0) {
        timestamp();
    } else if (strcmp(argv[0], "hb-caps") == 0) {
        cmd_caps();
    } else if (strcmp(argv[0], "hb-arena") == 0) {
        cmd_arena();
    } else if (strcmp(argv[0], "hb-dbbin") == 0) {
        cmd_dbbin(argc, argv);
#if HB_PROFILE
    } else if (strcmp(argv[0], "hb-profile") == 0) {
        cmd_op_profile();
#endif
    } else {
        out("e-[Unknown command: ");
        out(argv[0]);
        out_line("]");
    }
    out_ready();
}

/* ------------------------------------------------------------------------------------------- API */

void hb_protocol_init(void)
{
    hb_port_init();
#if HB_ENERGY_MODE
    hb_port_gpio_marker(1);
#endif
    (void)ticks64();
    s_model_status = hb_model_init();
    if (s_model_status == 0 && wire_bytes() > HB_DB_BUFFER_BYTES) {
        s_model_status = 6; /* the input does not fit the db buffer */
    }
#if HB_IO_CONVENTION == HB_IO_FLOAT32_MSE
    if (s_model_status == 0 && hb_model_output_count() != hb_model_input_bytes()) {
        s_model_status = 5; /* float32-mse compares output 0 with the input, element by element */
    }
#endif
    if (s_model_status != 0) {
        out_error_n("model init failed with code ", (uint64_t)(unsigned)s_model_status, "");
    }
#if HB_ENERGY_MODE
    out_line("m-timestamp-mode-energy");
#else
    out_line("m-timestamp-mode-performance");
#endif
    out_line("m-init-done");
    out_ready();
}

void hb_protocol_poll(void)
{
    int c;
    while ((c = hb_port_uart_read_byte()) >= 0) {
        if (c == '%') {
            s_cmd[s_cmd_len] = '\0';
            if (s_cmd_overflow) {
                out_error("Command too long (max 80 chars)");
                out_ready();
            } else {
                execute(s_cmd);
            }
            s_cmd_len = 0;
            s_cmd_overflow = 0;
        } else if (c == '\r' || c == '\n') {
            /* ignored, as in the reference firmware */
        } else if (s_cmd_len < HB_CMD_MAX) {
            s_cmd[s_cmd_len++] = (char)c;
        } else {
            s_cmd_overflow = 1;
        }
    }
    (void)ticks64();
}

void hb_benchmark_main(void)
{
    hb_protocol_init();
    for (;;) {
        hb_protocol_poll();
        hb_port_idle();
    }
}
