/* hb_config.h - protocol settings of the QEMU mps2-an386 reference target (stand-in model). */
#ifndef HB_CONFIG_H
#define HB_CONFIG_H

#ifndef HB_DUT_NAME
#define HB_DUT_NAME "qemu-mps2-an386"
#endif
#ifndef HB_PROFILE_STRING
#define HB_PROFILE_STRING "hilbench-standin/1 qemu-mps2-an386"
#endif
#ifndef HB_DB_BUFFER_BYTES
#define HB_DB_BUFFER_BYTES 256
#endif
#ifndef HB_ENERGY_MODE
#define HB_ENERGY_MODE 0
#endif

#endif /* HB_CONFIG_H */
