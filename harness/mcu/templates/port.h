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

/* Free-running microsecond counter; may wrap at 2^32 (the protocol layer extends it to 64 bits as
 * long as it is read at least once per wrap period, which the benchmark loop does). */
uint32_t hb_port_timer_us(void);

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
