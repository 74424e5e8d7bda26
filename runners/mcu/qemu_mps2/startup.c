/* startup.c - reset handler and vector table for the QEMU mps2-an386 (Cortex-M4) reference target. */
#include <stdint.h>
#include <string.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
extern int main(void);

void Reset_Handler(void);
void Default_Handler(void);
void HardFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void SysTick_Handler(void) __attribute__((weak, alias("Default_Handler")));
void UART0RX_Handler(void) __attribute__((weak, alias("Default_Handler")));

void Default_Handler(void)
{
    for (;;) {
    }
}

typedef void (*vector_t)(void);

/* Cortex-M vector table: initial stack pointer, 15 system exceptions, then external interrupts.
 * On mps2-an385/an386 external interrupt 0 is the UART0 receive interrupt. */
__attribute__((section(".isr_vector"), used)) const vector_t g_vectors[16 + 2] = {
    (vector_t)(uintptr_t)&_estack,
    Reset_Handler,
    Default_Handler,   /* NMI */
    HardFault_Handler,
    Default_Handler,   /* MemManage */
    Default_Handler,   /* BusFault */
    Default_Handler,   /* UsageFault */
    0, 0, 0, 0,
    Default_Handler,   /* SVCall */
    Default_Handler,   /* DebugMonitor */
    0,
    Default_Handler,   /* PendSV */
    SysTick_Handler,
    UART0RX_Handler,   /* IRQ 0: UART0 RX */
    Default_Handler,   /* IRQ 1: UART0 TX */
};

void Reset_Handler(void)
{
    size_t data_len = (size_t)((uintptr_t)&_edata - (uintptr_t)&_sdata);
    size_t bss_len = (size_t)((uintptr_t)&_ebss - (uintptr_t)&_sbss);
    memcpy(&_sdata, &_sidata, data_len);
    memset(&_sbss, 0, bss_len);
    (void)main();
    for (;;) {
    }
}
