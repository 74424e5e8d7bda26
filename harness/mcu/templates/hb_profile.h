/* hb_profile.h - per-operator ticks of the last profiled inference (the `hb-profile%` extension).
 *
 * Compiled in only with HB_PROFILE 1 (`hil build --op-profiler` puts it in hb_config.h). The model
 * backend reports each operator it runs: main.cc through TFLM's MicroProfilerInterface (the tag is
 * the op's name, "CONV_2D"), the QEMU stand-in around its one layer. The protocol layer arms the
 * recorder for one inference only: the untimed one at the end of `infer N W` whose outputs
 * m-results reports. The timed loop is never recorded, so its laps do not include the recorder's
 * clock reads (each operator still costs one call into an unarmed recorder there).
 *
 * Ticks come from the port's time base (port.h): cycles with HB_PORT_TIMER_CYCLES 1 (DWT->CYCCNT on
 * Cortex-M3 and up), else microseconds. Differences are taken on the 32-bit counter, so one operator
 * must take less than its wrap period (port.h asks that of a whole inference already).
 */
#ifndef HB_PROFILE_H
#define HB_PROFILE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HB_PROFILE_NO_EVENT 0xFFFFFFFFu

/* Forget the last profile and record the operators of the next inference. */
void hb_profile_arm(void);
/* Stop recording; ok != 0 keeps what was recorded as "the last profiled inference". */
void hb_profile_disarm(int ok);

/* Called by the model backend around each operator (tags must outlive the profile: string literals
 * or TFLM's op names). Cheap and without effect while the recorder is not armed. */
uint32_t hb_profile_begin(const char *tag);
void hb_profile_end(uint32_t handle);

/* The last profiled inference: 0 when there is none yet. */
int hb_profile_ready(void);
size_t hb_profile_count(void);      /* operators recorded */
size_t hb_profile_lost(void);       /* operators beyond HB_PROFILE_MAX_OPS, not recorded */
const char *hb_profile_tag(size_t i);
uint32_t hb_profile_op_ticks(size_t i);
uint32_t hb_profile_invoke_ticks(void); /* the whole inference, interpreter overhead included */
uint32_t hb_profile_ticks_per_second(void);

#ifdef __cplusplus
}
#endif

#endif /* HB_PROFILE_H */
