// Config: YAML parsing against the schema, error messages, command-line overrides, round trips.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "distillery/config.h"
#include "distillery/error.h"
#include "test_support.h"

namespace distillery::testing {
namespace {

using ::testing::HasSubstr;

class ConfigTest : public SeededTest {};

/// Every key of the schema, read from the first column of describe_keys().
std::vector<std::string> schema_keys() {
  std::vector<std::string> keys;
  std::istringstream lines(Config::describe_keys());
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream words(line);
    std::string key;
    if (words >> key) keys.push_back(key);
  }
  return keys;
}

TEST_F(ConfigTest, ParsesNestedYamlAndKeepsDefaults) {
  const auto config = Config::parse(R"(
name: small
train:
  lr: 0.05
  epochs: 3
  optimizer: adam
model:
  hidden: [100, 50]
  dropout_hidden: 0.5
run:
  resume: false
distill:
  teachers: [a.pt, b.pt]
)",
                                    "test.yaml");
  EXPECT_EQ(config.get_string("name"), "small");
  EXPECT_DOUBLE_EQ(config.get_double("train.lr"), 0.05);
  EXPECT_EQ(config.get_int("train.epochs"), 3);
  EXPECT_EQ(config.get_string("train.optimizer"), "adam");
  EXPECT_EQ(config.get_int_list("model.hidden"), (std::vector<int64_t>{100, 50}));
  EXPECT_DOUBLE_EQ(config.get_double("model.dropout_hidden"), 0.5);
  EXPECT_FALSE(config.get_bool("run.resume"));
  EXPECT_EQ(config.get_string_list("distill.teachers"), (std::vector<std::string>{"a.pt", "b.pt"}));
  EXPECT_TRUE(config.is_set("train.lr"));
  // Keys not in the text keep their defaults.
  EXPECT_FALSE(config.is_set("train.batch_size"));
  EXPECT_EQ(config.get_int("train.batch_size"), 100);
  EXPECT_EQ(config.get_string("model.kind"), "mlp");
  EXPECT_EQ(config.get_int_list("data.keep_classes"), std::vector<int64_t>{});
  EXPECT_TRUE(config.get_bool("distill.cache"));
}

TEST_F(ConfigTest, DefaultsAndEmptyText) {
  const Config defaults;
  const auto empty = Config::parse("", "empty.yaml");
  for (const auto* config : {&defaults, &empty}) {
    EXPECT_EQ(config->get_int("train.epochs"), 10);
    EXPECT_DOUBLE_EQ(config->get_double("train.lr"), 0.1);
    EXPECT_EQ(config->get_int_list("model.hidden"), (std::vector<int64_t>{1200, 1200}));
    EXPECT_EQ(config->get_string("data.dir"), "");
    EXPECT_FALSE(config->is_set("train.epochs"));
  }
  EXPECT_THROW(defaults.get_int("no.such.key"), std::logic_error);
}

TEST_F(ConfigTest, UnknownKeySuggestsTheNearestKey) {
  const auto message = input_error_message([] { Config::parse("train:\n  lr_rate: 0.1\n", "exp.yaml"); });
  EXPECT_THAT(message, HasSubstr("exp.yaml"));
  EXPECT_THAT(message, HasSubstr("'train.lr_rate'"));
  EXPECT_THAT(message, HasSubstr("did you mean 'train.lr'"));

  EXPECT_THAT(input_error_message([] { Config::parse("trian:\n  epochs: 3\n", "exp.yaml"); }),
              HasSubstr("did you mean 'train.epochs'"));
  EXPECT_THAT(input_error_message([] { Config::parse("model:\n  hiden: [10]\n", "exp.yaml"); }),
              HasSubstr("did you mean 'model.hidden'"));
  EXPECT_EQ(nearest_config_key("train.lr_rate"), "train.lr");
  EXPECT_EQ(nearest_config_key("data.jiter"), "data.jitter");
  EXPECT_EQ(nearest_config_key("train.optimiser"), "train.optimizer");
}

TEST_F(ConfigTest, WrongTypesAreRejectedWithTheKey) {
  struct Case {
    const char* text;
    const char* key;
  };
  const std::vector<Case> cases = {
      {"train:\n  epochs: abc\n", "train.epochs"},
      {"train:\n  epochs: 2.5\n", "train.epochs"},
      {"train:\n  epochs: [1, 2]\n", "train.epochs"},
      {"train:\n  lr: fast\n", "train.lr"},
      {"run:\n  resume: maybe\n", "run.resume"},
      {"model:\n  hidden: 5\n", "model.hidden"},
      {"model:\n  hidden: [10, x]\n", "model.hidden"},
      {"model:\n  kind: [mlp]\n", "model.kind"},
      {"distill:\n  teachers: {a: 1}\n", "distill.teachers"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    const auto message = input_error_message([&] { Config::parse(c.text, "types.yaml"); });
    EXPECT_THAT(message, HasSubstr(c.key));
    EXPECT_THAT(message, HasSubstr("must be"));
    EXPECT_THAT(message, HasSubstr("types.yaml"));
  }
  EXPECT_THAT(input_error_message([] { Config::parse("train:\n  epochs: abc\n", "t.yaml"); }), HasSubstr("abc"));
}

TEST_F(ConfigTest, DifferencesCompareValuesNotSpellings) {
  const auto a = Config::parse("train:\n  lr: 0.003\nmodel:\n  hidden: [800, 800]\n", "a.yaml");
  auto b = Config::parse("train:\n  lr: 3e-3\n", "b.yaml");
  b.set("model.hidden=[800, 800]");
  EXPECT_TRUE(a.differences(b).empty());  // 0.003 == 3e-3; an explicit value equal to the default is no difference
  b.set("train.epochs=7");
  b.set("model.hidden=[800]");
  const auto d = a.differences(b);
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[0].key, "model.hidden");  // schema order
  EXPECT_EQ(d[0].ours, "[800, 800]");
  EXPECT_EQ(d[0].theirs, "[800]");
  EXPECT_EQ(d[1].key, "train.epochs");
  EXPECT_EQ(d[1].theirs, "7");
}

TEST_F(ConfigTest, OutOfRangeValuesAreRejectedWithTheKey) {
  struct Case {
    const char* text;
    const char* key;
  };
  const std::vector<Case> cases = {
      {"train:\n  epochs: 0\n", "train.epochs"},
      {"model:\n  dropout_input: 1.5\n", "model.dropout_input"},
      {"train:\n  lr: -0.1\n", "train.lr"},
      {"data:\n  jitter: 17\n", "data.jitter"},
      {"model:\n  hidden: [100, 0]\n", "model.hidden"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    const auto message = input_error_message([&] { Config::parse(c.text, "range.yaml"); });
    EXPECT_THAT(message, HasSubstr(c.key));
    EXPECT_THAT(message, HasSubstr("out of range"));
  }
  // The limits themselves are allowed.
  EXPECT_EQ(Config::parse("train:\n  epochs: 1\n", "ok").get_int("train.epochs"), 1);
  EXPECT_EQ(Config::parse("data:\n  jitter: 16\n", "ok").get_int("data.jitter"), 16);
}

TEST_F(ConfigTest, BadChoiceIsRejectedWithTheChoices) {
  const auto message = input_error_message([] { Config::parse("train:\n  optimizer: rmsprop\n", "c.yaml"); });
  EXPECT_THAT(message, HasSubstr("train.optimizer"));
  EXPECT_THAT(message, HasSubstr("rmsprop"));
  EXPECT_THAT(message, HasSubstr("sgd"));
  EXPECT_THAT(message, HasSubstr("adam"));
  EXPECT_THAT(input_error_message([] { Config::parse("model:\n  kind: resnet\n", "c.yaml"); }), HasSubstr("model.kind"));
}

TEST_F(ConfigTest, InvalidYamlAndNonMappingsAreRejected) {
  EXPECT_THAT(input_error_message([] { Config::parse("train: [1, 2\n", "broken.yaml"); }), HasSubstr("broken.yaml"));
  EXPECT_THAT(input_error_message([] { Config::parse("- 1\n- 2\n", "list.yaml"); }), HasSubstr("list.yaml"));
}

TEST_F(ConfigTest, LoadReadsAFileAndNamesItInErrors) {
  TempDir dir;
  const auto path = dir.file("exp.yaml");
  write_bytes(path, "train:\n  epochs: 4\n");
  EXPECT_EQ(Config::load(path).get_int("train.epochs"), 4);
  write_bytes(path, "train:\n  epochs: 0\n");
  EXPECT_THAT(input_error_message([&] { Config::load(path); }), HasSubstr(path));
  const auto missing = dir.file("missing.yaml");
  EXPECT_THAT(input_error_message([&] { Config::load(missing); }), HasSubstr(missing));
}

TEST_F(ConfigTest, SetOverridesKeys) {
  Config config;
  config.set("train.lr=0.05");
  EXPECT_DOUBLE_EQ(config.get_double("train.lr"), 0.05);
  EXPECT_TRUE(config.is_set("train.lr"));
  config.set("model.hidden=[10, 20, 30]");
  EXPECT_EQ(config.get_int_list("model.hidden"), (std::vector<int64_t>{10, 20, 30}));
  config.set("run.resume=false");
  EXPECT_FALSE(config.get_bool("run.resume"));
  config.set("name=a=b");  // only the first '=' separates key and value
  EXPECT_EQ(config.get_string("name"), "a=b");
  config.set("train.epochs", "7");
  EXPECT_EQ(config.get_int("train.epochs"), 7);
  // A later set wins over the file.
  auto from_file = Config::parse("train:\n  lr: 0.5\n", "f.yaml");
  from_file.set("train.lr=0.25");
  EXPECT_DOUBLE_EQ(from_file.get_double("train.lr"), 0.25);
}

TEST_F(ConfigTest, BadSetsThrowAndLeaveTheConfigUnchanged) {
  Config config;
  config.set("train.epochs=5");
  EXPECT_THAT(input_error_message([&] { config.set("nokey"); }), HasSubstr("nokey"));
  EXPECT_THAT(input_error_message([&] { config.set("=5"); }), HasSubstr("=5"));
  const auto unknown = input_error_message([&] { config.set("train.epoch=3"); });
  EXPECT_THAT(unknown, HasSubstr("train.epoch"));
  EXPECT_THAT(unknown, HasSubstr("did you mean 'train.epochs'"));
  EXPECT_THAT(input_error_message([&] { config.set("train.epochs=0"); }), HasSubstr("train.epochs"));
  EXPECT_THAT(input_error_message([&] { config.set("train.epochs=[1"); }), HasSubstr("train.epochs"));
  EXPECT_THAT(input_error_message([&] { config.set("train.optimizer=rmsprop"); }), HasSubstr("rmsprop"));
  EXPECT_EQ(config.get_int("train.epochs"), 5);
  EXPECT_EQ(config.get_string("train.optimizer"), "sgd");
}

TEST_F(ConfigTest, ToYamlRoundTripsEveryKey) {
  auto config = Config::parse(R"(
name: "run: #1"
run:
  dir: /tmp/some runs
  resume: false
data:
  keep_classes: [1, 2]
  jitter: 2
model:
  kind: convnet
  hidden: [64]
  dropout_input: 0.25
train:
  lr: 1e-3
  seed: 12345678901
distill:
  teachers: [a.pt, "b c.pt"]
  temperature: 2.5
)",
                              "rt.yaml");
  config.set("train.epochs=3");
  const std::string yaml = config.to_yaml();
  const auto again = Config::parse(yaml, "round-trip");
  EXPECT_EQ(again.to_yaml(), yaml);
  EXPECT_EQ(again.get_string("name"), "run: #1");
  EXPECT_EQ(again.get_string("run.dir"), "/tmp/some runs");
  EXPECT_FALSE(again.get_bool("run.resume"));
  EXPECT_EQ(again.get_int_list("data.keep_classes"), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(again.get_int("data.jitter"), 2);
  EXPECT_EQ(again.get_string("model.kind"), "convnet");
  EXPECT_EQ(again.get_int_list("model.hidden"), (std::vector<int64_t>{64}));
  EXPECT_DOUBLE_EQ(again.get_double("model.dropout_input"), 0.25);
  EXPECT_DOUBLE_EQ(again.get_double("train.lr"), 1e-3);
  EXPECT_EQ(again.get_int("train.seed"), 12345678901);
  EXPECT_EQ(again.get_int("train.epochs"), 3);
  EXPECT_EQ(again.get_string_list("distill.teachers"), (std::vector<std::string>{"a.pt", "b c.pt"}));
  EXPECT_DOUBLE_EQ(again.get_double("distill.temperature"), 2.5);
  // Defaults are written out too, and read back as the same values.
  EXPECT_EQ(again.get_string("data.dir"), "");
  EXPECT_EQ(again.get_int("train.batch_size"), 100);
  EXPECT_DOUBLE_EQ(again.get_double("train.lr_decay"), 0.95);

  // The resolved YAML holds every key of the schema (all of them set after the round trip), and the
  // defaults alone round-trip as well.
  const auto keys = schema_keys();
  ASSERT_GT(keys.size(), 30u);
  for (const auto& key : keys) EXPECT_TRUE(again.is_set(key)) << key;
  const Config defaults;
  EXPECT_EQ(Config::parse(defaults.to_yaml(), "defaults").to_yaml(), defaults.to_yaml());
}

}  // namespace
}  // namespace distillery::testing
