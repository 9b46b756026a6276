# The devices of qseries' QEMU builds: configure --without-default-devices
# --with-devices-x86_64=<a copy of this file> (qemu/build.py).  The q35
# machine is what the qtests run; Kconfig's "select"s bring in what it
# needs.  Each installed lab adds the devices its proof runs (its
# devices.mak), after these lines.  Checked on QEMU 10.0.13 and 10.2.2.
CONFIG_Q35=y

# Q35 selects ACPI_CXL, whose hw/acpi/cxl.c calls cxl_fmws_get_all_sorted()
# (QEMU 10.1 and later) that no CXL=n stub provides: QEMU would not link
# without CXL, nor CXL without PXB and CXL_MEM_DEVICE, and CXL's cxl-rp
# device needs PCIE_PORT's pcie-root-port-base when QEMU starts.
CONFIG_PXB=y
CONFIG_CXL=y
CONFIG_CXL_MEM_DEVICE=y
CONFIG_PCIE_PORT=y
