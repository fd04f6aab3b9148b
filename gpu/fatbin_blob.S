/* The fatbin nvcc made of kernels.cu, as read-only data (see fatbin.h);
 * DYN_FATBIN is its path, given by the Makefile. */
	.section .rodata
	.globl cuda_fatbin
	.balign 64
cuda_fatbin:
	.incbin DYN_FATBIN
cuda_fatbin_end:
	.globl cuda_fatbin_size
	.balign 8
cuda_fatbin_size:
	.quad cuda_fatbin_end - cuda_fatbin
	.section .note.GNU-stack,"",@progbits
