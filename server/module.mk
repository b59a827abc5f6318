# server/: wiremesh-server (control plane + admin CLI).
SERVER_SRCS := $(filter-out server/main.c,$(wildcard server/*.c))
SERVER_OBJS := $(SERVER_SRCS:%.c=$(BUILD)/%.o) $(BUILD)/server/migrations_gen.o \
               $(BUILD)/server/pg_migrations_gen.o \
               $(BUILD)/server/openapi_gen.o $(BUILD)/server/admin_assets_gen.o
SERVER_LIB  := $(BUILD)/libserver.a
MIGRATIONS  := $(sort $(wildcard migrations/*.sql))
PG_MIGRATIONS := $(sort $(wildcard migrations/pg/*.sql))

# Embeds migrations/NNNN_name.sql as C strings, in order.
$(BUILD)/server/migrations_gen.c: $(MIGRATIONS) scripts/embed-sql.sh
	@mkdir -p $(dir $@)
	$(Q)scripts/embed-sql.sh $(MIGRATIONS) > $@.tmp && mv $@.tmp $@

$(BUILD)/server/pg_migrations_gen.c: $(PG_MIGRATIONS) scripts/embed-sql.sh
	@mkdir -p $(dir $@)
	$(Q)scripts/embed-sql.sh -n pg_migrations $(PG_MIGRATIONS) > $@.tmp && mv $@.tmp $@

$(BUILD)/server/openapi_gen.c: docs/openapi.json scripts/embed-text.sh
	@mkdir -p $(dir $@)
	$(Q)scripts/embed-text.sh openapi_json docs/openapi.json > $@.tmp && mv $@.tmp $@

# The admin console (served at /admin) is embedded as it is: no bundler.
ADMIN_ASSETS := $(sort $(wildcard server/console/*.html server/console/*.css \
                server/console/js/*.js))
$(BUILD)/server/admin_assets_gen.c: $(ADMIN_ASSETS) scripts/embed-assets.sh scripts/embed-text.sh
	@mkdir -p $(dir $@)
	$(Q)scripts/embed-assets.sh server/console $(ADMIN_ASSETS) > $@.tmp && mv $@.tmp $@

$(BUILD)/server/%_gen.o: $(BUILD)/server/%_gen.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

$(SERVER_LIB): $(SERVER_OBJS)
LIBS += $(SERVER_LIB)

$(BIN)/wiremesh-server: $(BUILD)/server/main.o $(SERVER_LIB) $(RELAY_LIB) $(POLICY_LIB_IF_ANY) $(COMMON_LIB)
BINARIES += $(BIN)/wiremesh-server
