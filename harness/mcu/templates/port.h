/* port.h - the board porting layer of a hilbench benchmark firmware.
 *
 * The protocol layer (hb_protocol.c) reaches the hardware only through these functions. Implement
 * them for your board (start from port_template.c); everything else is portable C/C++.
 * All functions are called from one thread (the benchmark loop); none needs to be reentrant.
 */
#ifndef HB_PORT_H
#define HB_PORT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bring up the UART (8N1 at the profile's baud rate, 115200 by default), the microsecond timer and,
 * for energy mode, the marker GPIO. Called once, before anything else. */
void hb_port_init(void);

/* Send len bytes; may block until they are queued. No translation of line endings. */
void hb_port_uart_write(const char *data, size_t len);

/* Non-blocking receive: the next byte (0..255) if one is pending, -1 otherwise. Bytes must not be
 * lost while the benchmark runs an inference: buffer them (interrupt + ring buffer or DMA) unless
 * the host never sends during an inference (it does not: it waits for m-ready). */
int hb_port_uart_read_byte(void);

/* The time base: implement ONE of the two (port_template.c says which one per MCU family).
 *
 * (a) Default: hb_port_timer_us(), a free-running 1 MHz counter that wraps at exactly 2^32 (a 32-bit
 *     hardware timer clocked at 1 MHz, or the low 32 bits of a 64-bit microsecond clock).
 * (b) HB_PORT_TIMER_CYCLES 1 (hb_config.h or -D): hb_port_cycles(), a free-running 32-bit cycle counter
 *     (DWT->CYCCNT on Cortex-M3/M4/M7/M33/M55/M85), and hb_port_cycles_hz(), its clock in Hz.
 *
 * Never divide a cycle counter down to microseconds here: DWT->CYCCNT / (SystemCoreClock / 1000000)
 * wraps after 2^32 *cycles* (8.9 s at 480 MHz), not at 2^32 us, and windows longer than that would be
 * timed wrong. The protocol layer extends either counter to 64 bits and prints microseconds since
 * boot; for that it reads the counter after every inference, so one inference must be shorter than
 * the counter's wrap period (2^32 us = 71.6 min; 2^32 cycles = 8.9 s at 480 MHz). */
uint32_t hb_port_timer_us(void);
uint32_t hb_port_cycles(void);
uint32_t hb_port_cycles_hz(void);

/* Energy mode only: drive the timestamp GPIO the energy monitor watches (0 = low, 1 = high).
 * A no-op is fine in performance mode. */
void hb_port_gpio_marker(int level);

/* Called whenever no input is pending; may sleep until the next interrupt (e.g. __WFI()) or do
 * nothing. Must return when a byte arrives. */
void hb_port_idle(void);

#ifdef __cplusplus
}
#endif

#endif /* HB_PORT_H */
