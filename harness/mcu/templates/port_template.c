/* port_template.c - fill in for your board (copy to port.c, or edit in place).
 *
 * A few small functions connect the benchmark to the hardware; see port.h for the contract. The
 * bodies below compile everywhere and do nothing: replace each TODO. Sketches for common platforms:
 *
 *   STM32 HAL   write: HAL_UART_Transmit(&huart, (uint8_t *)data, len, HAL_MAX_DELAY)
 *               read:  RXNE flag + data register (or HAL_UART_Receive_IT into a ring buffer)
 *   Zephyr      write: uart_poll_out() per byte; read: uart_poll_in() (returns -1 when empty)
 *   ESP-IDF     write: uart_write_bytes(); read: uart_read_bytes(port, &b, 1, 0) == 1 ? b : -1
 *   Arduino     write: Serial.write(); read: Serial.available() ? Serial.read() : -1
 *
 * The timer, per family (port.h: (a) a 1 MHz counter wrapping at 2^32, or (b) a cycle counter with
 * HB_PORT_TIMER_CYCLES 1; the protocol layer extends both to 64-bit microseconds):
 *
 *   Cortex-M3/M4/M7/M33/M55/M85 (STM32F4/F7/H7/L4/U5, nRF52/53, i.MX RT, SAM E): (b) the DWT cycle
 *               counter. Init: CoreDebug->DEMCR |= CoreDebug_DEMCR_TRCENA_Msk; on Cortex-M7 also
 *               DWT->LAR = 0xC5ACCE55; DWT->CYCCNT = 0; DWT->CTRL |= DWT_CTRL_CYCCNTENA_Msk.
 *               hb_port_cycles(): return DWT->CYCCNT; hb_port_cycles_hz(): return SystemCoreClock.
 *               Alternative (a): a 32-bit timer (STM32 TIM2/TIM5, nRF TIMERn in 32-bit mode) with its
 *               prescaler set for 1 MHz; hb_port_timer_us(): return TIMx->CNT.
 *   Cortex-M0/M0+ (STM32G0/L0/C0, RP2040, SAMD21): no cycle counter: (a) a 32-bit 1 MHz timer
 *               (RP2040: timer_hw->timerawl; STM32G0: TIM2 with a 1 MHz prescaler).
 *   ESP32, ESP32-S3 (ESP-IDF): (a) (uint32_t)esp_timer_get_time() (the CPU cycle counter changes
 *               rate with dynamic frequency scaling: do not use it).
 *   Zephyr:     (a) (uint32_t)k_cyc_to_us_floor64(k_cycle_get_64()).
 *   Arduino:    (a) micros() (wraps at 2^32 us).
 *   Never:      DWT->CYCCNT / (SystemCoreClock / 1000000) as (a): it wraps every 2^32 cycles
 *               (8.9 s at 480 MHz), and a 10 s window would be timed wrong.
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
    /* TODO (a): free-running 1 MHz counter wrapping at 2^32 (see the table above). */
    return 0u;
}

uint32_t hb_port_cycles(void)
{
    /* TODO (b), with HB_PORT_TIMER_CYCLES 1: free-running 32-bit cycle counter, e.g. DWT->CYCCNT. */
    return 0u;
}

uint32_t hb_port_cycles_hz(void)
{
    /* TODO (b): the cycle counter's clock in Hz, e.g. SystemCoreClock. */
    return 1000000u;
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
