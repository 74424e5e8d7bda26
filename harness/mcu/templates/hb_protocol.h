/* hb_protocol.h - MLPerf Tiny / EEMBC performance-mode serial protocol with hilbench extensions.
 *
 * Configuration comes from hb_config.h (generated per bundle):
 *   HB_DUT_NAME         string for m-name-dut-[...]
 *   HB_PROFILE_STRING   string for m-profile-[...]
 *   HB_DB_BUFFER_BYTES  capacity of the input staging buffer (>= the model's input bytes)
 *   HB_ENERGY_MODE      1: timestamps are GPIO pulses for an energy monitor instead of m-lap-us lines
 *   HB_PORT_TIMER_CYCLES 1: the port's time base is a cycle counter (port.h)
 *   HB_IO_CONVENTION    what `db load` carries and m-results reports (MLPerf Tiny reference firmware):
 *                       HB_IO_TENSOR           the input tensor's bytes; output 0 (hilbench, kws01)
 *                       HB_IO_UINT8_MINUS_128  uint8 image bytes, 128 subtracted on the device to make the
 *                                              int8 input (ic01, vww01); output 0
 *                       HB_IO_FLOAT32_MSE      float32 per input element, quantised on the device (int8
 *                                              input); one value: mean squared error of output 0 against
 *                                              the input (ad01)
 *
 * Init failure codes (e-[model init failed with code N]): 1-4 from hb_model_init(), 5 float32-mse with
 * output 0 not the input's size, 6 the input does not fit HB_DB_BUFFER_BYTES.
 */
#ifndef HB_PROTOCOL_H
#define HB_PROTOCOL_H

#define HB_IO_TENSOR 0
#define HB_IO_UINT8_MINUS_128 1
#define HB_IO_FLOAT32_MSE 2

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
