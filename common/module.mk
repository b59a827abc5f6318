# common/: static library linked into every binary.
COMMON_SRCS := $(wildcard common/*.c)
COMMON_LIB  := $(BUILD)/libcommon.a
$(COMMON_LIB): $(COMMON_SRCS:%.c=$(BUILD)/%.o)
