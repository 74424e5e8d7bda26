/* port_mps2.c - hilbench porting layer for QEMU mps2-an386 (Cortex-M4, 25 MHz).
 *
 * UART0: CMSDK APB UART at 0x40004000, receive interrupt (IRQ 0) into a ring buffer.
 * Timer: SysTick on the 25 MHz processor clock, 1 ms period, interpolated to microseconds (port.h (a)).
 * With HB_PORT_TIMER_CYCLES 1 the same clock is offered as a 32-bit cycle counter (port.h (b)), scaled
 * by 2^HB_QEMU_CYCLES_SHIFT so that tests can make it wrap every few seconds, as DWT->CYCCNT does on a
 * fast core (shift 7: 3.2 GHz, wraps every 1.34 s).
 * Marker: bit 0 of CMSDK GPIO0 (0x40010000).
 */
#include "port.h"

#define REG(addr) (*(volatile uint32_t *)(addr))

#define UART0_BASE 0x40004000u
#define UART_DATA REG(UART0_BASE + 0x00u)
#define UART_STATE REG(UART0_BASE + 0x04u) /* bit0 TX full, bit1 RX full */
#define UART_CTRL REG(UART0_BASE + 0x08u)  /* bit0 TX en, bit1 RX en, bit3 RX int en */
#define UART_INTCLEAR REG(UART0_BASE + 0x0Cu)
#define UART_BAUDDIV REG(UART0_BASE + 0x10u)

#define SYST_CSR REG(0xE000E010u)
#define SYST_RVR REG(0xE000E014u)
#define SYST_CVR REG(0xE000E018u)
#define SCB_ICSR REG(0xE000ED04u)
#define ICSR_PENDSTSET (1u << 26)
#define NVIC_ISER0 REG(0xE000E100u)

#define GPIO0_DATAOUT REG(0x40010004u)
#define GPIO0_OUTENSET REG(0x40010010u)

#define SYSCLK_HZ 25000000u
#define TICKS_PER_MS (SYSCLK_HZ / 1000u)
#define TICKS_PER_US (SYSCLK_HZ / 1000000u)

static volatile uint32_t s_ms;
static volatile uint8_t s_rx[256];
static volatile uint8_t s_rx_head, s_rx_tail; /* uint8_t indices wrap with the 256-byte ring */

void SysTick_Handler(void) { s_ms++; }

void UART0RX_Handler(void)
{
    UART_INTCLEAR = 2u; /* clear first: a byte arriving after this raises the interrupt again */
    while (UART_STATE & 2u) {
        uint8_t c = (uint8_t)UART_DATA;
        uint8_t next = (uint8_t)(s_rx_head + 1u);
        if (next != s_rx_tail) { /* drop on overflow; the host never sends that much unasked */
            s_rx[s_rx_head] = c;
            s_rx_head = next;
        }
    }
}

static void uart_putc(char c)
{
    while (UART_STATE & 1u) {
    }
    UART_DATA = (uint32_t)(uint8_t)c;
}

void HardFault_Handler(void)
{
    static const char msg[] = "e-[hardfault]\r\n";
    for (const char *p = msg; *p; ++p) uart_putc(*p);
    for (;;) {
    }
}

void hb_port_init(void)
{
    UART_BAUDDIV = SYSCLK_HZ / 115200u;
    UART_CTRL = (1u << 0) | (1u << 1) | (1u << 3);
    NVIC_ISER0 = 1u << 0;
    SYST_RVR = TICKS_PER_MS - 1u;
    SYST_CVR = 0u;
    SYST_CSR = (1u << 0) | (1u << 1) | (1u << 2); /* enable, interrupt, processor clock */
    GPIO0_OUTENSET = 1u;
    GPIO0_DATAOUT = 1u;
}

void hb_port_uart_write(const char *data, size_t len)
{
    for (size_t i = 0; i < len; ++i) uart_putc(data[i]);
}

int hb_port_uart_read_byte(void)
{
    if (s_rx_tail == s_rx_head) {
        return -1;
    }
    int c = s_rx[s_rx_tail];
    s_rx_tail = (uint8_t)(s_rx_tail + 1u);
    return c;
}

uint32_t hb_port_timer_us(void)
{
    uint32_t primask;
    __asm volatile("mrs %0, primask\n cpsid i" : "=r"(primask)::"memory");
    uint32_t ms = s_ms;
    uint32_t val = SYST_CVR;
    if (SCB_ICSR & ICSR_PENDSTSET) { /* wrapped, handler not run yet */
        val = SYST_CVR;
        ms++;
    }
    __asm volatile("msr primask, %0" ::"r"(primask) : "memory");
    return ms * 1000u + (TICKS_PER_MS - 1u - val) / TICKS_PER_US;
}

#ifndef HB_QEMU_CYCLES_SHIFT
#define HB_QEMU_CYCLES_SHIFT 0
#endif

uint32_t hb_port_cycles(void)
{
    uint32_t primask;
    __asm volatile("mrs %0, primask\n cpsid i" : "=r"(primask)::"memory");
    uint32_t ms = s_ms;
    uint32_t val = SYST_CVR;
    if (SCB_ICSR & ICSR_PENDSTSET) {
        val = SYST_CVR;
        ms++;
    }
    __asm volatile("msr primask, %0" ::"r"(primask) : "memory");
    /* processor clock ticks since boot, modulo 2^32 (unsigned arithmetic wraps like a hardware counter) */
    return (ms * TICKS_PER_MS + (TICKS_PER_MS - 1u - val)) << HB_QEMU_CYCLES_SHIFT;
}

uint32_t hb_port_cycles_hz(void) { return SYSCLK_HZ << HB_QEMU_CYCLES_SHIFT; }

void hb_port_gpio_marker(int level)
{
    if (level) {
        GPIO0_DATAOUT |= 1u;
    } else {
        GPIO0_DATAOUT &= ~1u;
    }
}

void hb_port_idle(void) { __asm volatile("wfi"); }
