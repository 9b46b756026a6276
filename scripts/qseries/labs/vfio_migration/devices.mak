# The devices this lab's proof runs in every QEMU build (qemu/build.py
# appends this file to the build's devices file): vfio-pci, which the
# fake device and mtty are driven through.
CONFIG_VFIO_PCI=y
