/* hb_protocol.h - MLPerf Tiny / EEMBC performance-mode serial protocol with hilbench extensions.
 *
 * Configuration comes from hb_config.h (generated per bundle):
 *   HB_DUT_NAME         string for m-name-dut-[...]
 *   HB_PROFILE_STRING   string for m-profile-[...]
 *   HB_DB_BUFFER_BYTES  capacity of the input staging buffer (>= the model's input bytes)
 *   HB_ENERGY_MODE      1: timestamps are GPIO pulses for an energy monitor instead of m-lap-us lines
 */
#ifndef HB_PROTOCOL_H
#define HB_PROTOCOL_H

#ifdef __cplusplus
extern "C" {
#endif

/* hb_port_init(), hb_model_init(), then the boot banner. */
void hb_protocol_init(void);

/* Handle every byte that is pending on the UART (executing complete commands); returns when none is
 * left. Call it from your main loop if the benchmark shares the MCU with other work. */
void hb_protocol_poll(void);

/* hb_protocol_init() then poll forever, idling between bytes. Never returns. */
void hb_benchmark_main(void);

#ifdef __cplusplus
}
#endif

#endif /* HB_PROTOCOL_H */
