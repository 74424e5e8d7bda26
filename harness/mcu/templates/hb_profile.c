/* hb_profile.c - the recorder behind hb_profile.h: fixed arrays, no heap, plain C99. */
#include "hb_profile.h"

#include "hb_config.h"
#include "port.h"

#ifndef HB_PORT_TIMER_CYCLES
#define HB_PORT_TIMER_CYCLES 0
#endif
#ifndef HB_PROFILE_MAX_OPS /* hil build sets it to the model's operator count */
#define HB_PROFILE_MAX_OPS 64
#endif

static const char *s_tag[HB_PROFILE_MAX_OPS];
static uint32_t s_start[HB_PROFILE_MAX_OPS];
static uint32_t s_ticks[HB_PROFILE_MAX_OPS];
static size_t s_count, s_lost;
static uint32_t s_invoke_start, s_invoke_ticks;
static int s_armed, s_ready;

static uint32_t ticks(void)
{
#if HB_PORT_TIMER_CYCLES
    return hb_port_cycles();
#else
    return hb_port_timer_us();
#endif
}

void hb_profile_arm(void)
{
    s_count = s_lost = 0;
    s_ready = 0;
    s_armed = 1;
    s_invoke_start = ticks();
}

void hb_profile_disarm(int ok)
{
    s_invoke_ticks = ticks() - s_invoke_start; /* modulo 2^32, like the counter */
    s_armed = 0;
    s_ready = ok != 0;
}

uint32_t hb_profile_begin(const char *tag)
{
    if (!s_armed) {
        return HB_PROFILE_NO_EVENT;
    }
    if (s_count >= HB_PROFILE_MAX_OPS) {
        s_lost++;
        return HB_PROFILE_NO_EVENT;
    }
    s_tag[s_count] = tag;
    s_ticks[s_count] = 0u;
    s_start[s_count] = ticks();
    return (uint32_t)s_count++;
}

void hb_profile_end(uint32_t handle)
{
    uint32_t now = ticks();
    if (s_armed && handle < s_count) {
        s_ticks[handle] = now - s_start[handle];
    }
}

int hb_profile_ready(void) { return s_ready; }

size_t hb_profile_count(void) { return s_count; }

size_t hb_profile_lost(void) { return s_lost; }

const char *hb_profile_tag(size_t i) { return i < s_count ? s_tag[i] : 0; }

uint32_t hb_profile_op_ticks(size_t i) { return i < s_count ? s_ticks[i] : 0u; }

uint32_t hb_profile_invoke_ticks(void) { return s_invoke_ticks; }

uint32_t hb_profile_ticks_per_second(void)
{
#if HB_PORT_TIMER_CYCLES
    return hb_port_cycles_hz();
#else
    return 1000000u;
#endif
}
