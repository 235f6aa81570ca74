// The cross-attention teaching panel ("Where words go") as a student sees it (Xvfb screenshots):
// opening the panel makes the run compute the maps; two tokens give two different maps; a
// single layer can be chosen; zero validation messages.
#include <doctest/doctest.h>

#include "tests/viewer_harness.h"

using namespace vksd::test;

namespace {

const Json& attention_panel(const Shot& s) { return at(at(s.layout, "panels"), "attention"); }

const std::string kRun = "-p 'red apple' --steps 8 --seed 7 --sampler euler --cfg-scale 5 --window 1600x1000 --panel attention ";

}  // namespace

TEST_CASE("panel attention: the maps of two tokens over x0-hat differ, a single layer can be chosen") {
  NEED_VIEWER();
  ViewerFixture fx;
  Shot red = fx.view("red", kRun + "--panel-set attention.token=1");
  Shot apple = fx.view("apple", kRun + "--panel-set attention.token=2");
  Shot layer = fx.view("layer", kRun + "--panel-set attention.token=2 --panel-set 'attention.block=output 5'");
  INFO(red.out << apple.out << layer.out);
  for (const Shot* s : {&red, &apple, &layer}) {
    CHECK(s->code == 0);
    CHECK(no_validation_messages(s->out));
    CHECK(s->state() == "done");
    const Json& p = attention_panel(*s);
    CHECK(p.find("maps")->as_bool());  // the panel being open made the run compute them
    CHECK(p.find("steps_row")->as_number() == 8);
    CHECK(stddev(crop(s->image, at(p, "rect"))) > 10);  // the panel is not blank
    CHECK(stddev(crop(s->image, at(p, "heat"))) > 10);  // nor is the map
  }
  CHECK(attention_panel(red).find("token")->as_number() == 1);
  CHECK(attention_panel(red).find("token_text")->as_string() == "red");
  CHECK(attention_panel(apple).find("token_text")->as_string() == "apple");
  CHECK(attention_panel(layer).find("block")->as_string() == "output 5");
  CHECK(attention_panel(red).find("block")->as_string() == "all");
  // The same run, two tokens: different maps, alone and over x0-hat.
  const Image heat_red = crop(red.image, at(attention_panel(red), "heat"));
  const Image heat_apple = crop(apple.image, at(attention_panel(apple), "heat"));
  const double d_heat = mean_abs_diff(heat_red, heat_apple);
  const double d_map = mean_abs_diff(crop(red.image, at(attention_panel(red), "map")),
                                     crop(apple.image, at(attention_panel(apple), "map")));
  MESSAGE("red vs apple: map alone differs by " << d_heat << ", over x0-hat by " << d_map << " (mean |delta| per channel)");
  CHECK(d_heat > 10);
  CHECK(d_map > 3);
  // One layer is not the mean of all of them.
  CHECK(mean_abs_diff(heat_apple, crop(layer.image, at(attention_panel(layer), "heat"))) > 10);
}
