/* main.c - QEMU reference target entry point: the benchmark loop of the protocol layer. */
#include "hb_protocol.h"

int main(void)
{
    hb_benchmark_main(); /* never returns */
    return 0;
}
