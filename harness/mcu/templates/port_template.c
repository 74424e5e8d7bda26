/* port_template.c - fill in for your board (copy to port.c, or edit in place).
 *
 * Five small functions connect the benchmark to the hardware; see port.h for the contract. The
 * bodies below compile everywhere and do nothing: replace each TODO. Sketches for common platforms:
 *
 *   STM32 HAL   write: HAL_UART_Transmit(&huart, (uint8_t *)data, len, HAL_MAX_DELAY)
 *               read:  RXNE flag + data register (or HAL_UART_Receive_IT into a ring buffer)
 *               timer: DWT->CYCCNT / (SystemCoreClock / 1000000) after enabling the cycle counter,
 *                      or a 32-bit TIMx clocked at 1 MHz
 *   Zephyr      write: uart_poll_out() per byte; read: uart_poll_in() (returns -1 when empty)
 *               timer: (uint32_t)k_cyc_to_us_floor64(k_cycle_get_64())
 *   ESP-IDF     write: uart_write_bytes(); read: uart_read_bytes(port, &b, 1, 0) == 1 ? b : -1
 *               timer: (uint32_t)esp_timer_get_time()
 *   Arduino     write: Serial.write(); read: Serial.available() ? Serial.read() : -1
 *               timer: micros()
 *
 * Keep the UART for the protocol only: route TFLM's DebugLog and any printf elsewhere (or nowhere),
 * otherwise their text interleaves with the protocol lines the host parses.
 */
#include "port.h"

void hb_port_init(void)
{
    /* TODO: clocks, UART (115200 8N1 unless the profile says otherwise), microsecond timer, and the
     * energy-mode marker pin as a push-pull output driven high. */
}

void hb_port_uart_write(const char *data, size_t len)
{
    /* TODO: transmit len bytes (blocking is fine). */
    (void)data;
    (void)len;
}

int hb_port_uart_read_byte(void)
{
    /* TODO: return the next received byte (0..255) or -1 if none is pending. Never block. */
    return -1;
}

uint32_t hb_port_timer_us(void)
{
    /* TODO: free-running microsecond counter (wrapping at 2^32 is fine). */
    return 0u;
}

void hb_port_gpio_marker(int level)
{
    /* TODO (energy mode only): drive the timestamp pin the energy monitor watches. */
    (void)level;
}

void hb_port_idle(void)
{
    /* Optional: sleep until the next interrupt, e.g. __WFI() on Cortex-M with an RX interrupt. */
}
