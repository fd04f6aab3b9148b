/*
 * hugepages.h - back a model's weight matrices with transparent huge
 * pages, for the CPU backend's decode: streaming the weights through 4 KB
 * pages costs a TLB miss per page and stops the hardware prefetchers at
 * every page boundary (measured: the GEMV reads ~25% faster from 2 MB
 * pages).
 *
 * hugepages_weights() asks the kernel (Linux 6.1+ MADV_COLLAPSE) to
 * rebuild the 2 MB-aligned interior of the weights' memory from huge
 * pages, synchronously (about 1 s per GB when the pages were small; fast
 * when they already are huge).  Contents and resident size are unchanged;
 * where the kernel cannot (older kernels, file mappings without
 * read-only THP support, THP disabled) the weights stay as they were.
 * Returns the bytes now in huge pages (0 off Linux).  Not thread-safe
 * against model_free() of the same model; reads of the weights may go on.
 */
#ifndef DYN_CPU_HUGEPAGES_H
#define DYN_CPU_HUGEPAGES_H

#include "core/model/model.h"

#include <stddef.h>

size_t hugepages_weights(const struct model *m);

#endif
