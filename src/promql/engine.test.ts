/**
 * The evaluator against Prometheus' own expectations: cases ported from its test data
 * (github.com/prometheus/prometheus, promql/promqltest/testdata/<file>), each script naming the
 * file its cases and expected values come from, run by a small promqltest interpreter over
 * series in memory. Native-histogram cases and constructs Specta refuses are left out.
 */
import { describe, it } from "vitest";
import { runScript } from "../../test/support/promqltest.js";

const cases: { name: string; file: string; script: string }[] = [
  {
    name: "rate, increase and their extrapolation",
    file: "functions.test",
    script: `
load 5m
  http_requests_total{path="/foo"} 0+10x10
  http_requests_total{path="/bar"} 0+18x5 0+18x5
  http_requests_total{path="/dings"} 10+10x10
  http_requests_total{path="/bumms"} 1+10x10

eval instant at 50m increase(http_requests_total[50m])
  {path="/foo"} 100
  {path="/bar"} 160
  {path="/dings"} 100
  {path="/bumms"} 100

# Extrapolation stops at the counter's zero point.
eval instant at 50m increase(http_requests_total[100m])
  {path="/foo"} 100
  {path="/bar"} 162
  {path="/dings"} 105
  {path="/bumms"} 101

clear
load 5m
  http_requests_total{path="/foo"} 0 1 2 3 2 3 4

eval instant at 30m increase(http_requests_total[30m])
  {path="/foo"} 7

clear
load 5m
  testcounter_reset_middle_total 0+27x4 0+27x5
  testcounter_reset_end_total 0+10x9 0 10

eval instant at 50m rate(testcounter_reset_middle_total[50m])
  {} 0.08

eval instant at 50m rate(testcounter_reset_end_total[5m])

eval instant at 50m rate(testcounter_reset_end_total[6m])
  {} 0

clear
load 5m
  calculate_rate_offset_total{x="a"} 0+10x10
  calculate_rate_offset_total{x="b"} 0+20x10
  calculate_rate_window_total 0+80x10

eval instant at 50m rate(calculate_rate_window_total[50m])
  {} 0.26666666666666666

eval instant at 50m rate(calculate_rate_offset_total[10m] offset 5m)
  {x="a"} 0.03333333333333333
  {x="b"} 0.06666666666666667

clear
load 4m
  testcounter_zero_cutoff_total{start="0m"} 0+240x10
  testcounter_zero_cutoff_total{start="1m"} 60+240x10
  testcounter_zero_cutoff_total{start="2m"} 120+240x10
  testcounter_zero_cutoff_total{start="3m"} 180+240x10
  testcounter_zero_cutoff_total{start="4m"} 240+240x10
  testcounter_zero_cutoff_total{start="5m"} 300+240x10

eval instant at 10m rate(testcounter_zero_cutoff_total[20m])
  {start="0m"} 0.5
  {start="1m"} 0.55
  {start="2m"} 0.6
  {start="3m"} 0.6
  {start="4m"} 0.6
  {start="5m"} 0.6

eval instant at 50m rate(testcounter_zero_cutoff_total[20m])
  {start="0m"} 0.6
  {start="1m"} 0.6
  {start="2m"} 0.6
  {start="3m"} 0.6
  {start="4m"} 0.6
  {start="5m"} 0.6
`,
  },
  {
    name: "irate, delta, idelta, resets and changes",
    file: "functions.test",
    script: `
load 5m
  http_requests_total{path="/foo"} 0+10x10
  http_requests_total{path="/bar"} 0+10x5 0+10x5
  http_requests_nan 1 NaN NaN 5 11

eval instant at 50m irate(http_requests_total[50m])
  {path="/foo"} .03333333333333333333
  {path="/bar"} .03333333333333333333

eval instant at 30m irate(http_requests_total[50m])
  {path="/foo"} .03333333333333333333
  {path="/bar"} 0

eval range from 0 to 20m step 5m irate(http_requests_nan[15m1s])
  {} _ NaN NaN NaN 0.02

clear
load 5m
  http_requests{path="/foo"} 0 50 100 150 200
  http_requests{path="/bar"} 200 150 100 50 0

eval instant at 20m delta(http_requests[20m])
  {path="/foo"} 200
  {path="/bar"} -200

clear
load 5m
  http_requests{path="/foo"} 0 50 100 150
  http_requests{path="/bar"} 0 50 100 50
  http_requests_nan 1 NaN NaN 5 11

eval instant at 20m idelta(http_requests[20m])
  {path="/foo"} 50
  {path="/bar"} -50

eval range from 0 to 20m step 5m idelta(http_requests_nan[15m1s])
  {} _ NaN NaN NaN 6

clear
load 5m
  http_requests{path="/foo"} 1 2 3 0 1 0 0 1 2 0
  http_requests{path="/bar"} 1 2 3 4 5 1 2 3 4 5
  http_requests{path="/biz"} 0 0 0 0 0 1 1 1 1 1

eval instant at 50m resets(http_requests[5m])

eval instant at 50m resets(http_requests[20m])
  {path="/foo"} 1
  {path="/bar"} 0
  {path="/biz"} 0

eval instant at 50m resets(http_requests[32m])
  {path="/foo"} 2
  {path="/bar"} 1
  {path="/biz"} 0

eval instant at 50m resets(http_requests[50m])
  {path="/foo"} 3
  {path="/bar"} 1
  {path="/biz"} 0

eval instant at 50m changes(http_requests[5m])

eval instant at 50m changes(http_requests[20m])
  {path="/foo"} 2
  {path="/bar"} 2
  {path="/biz"} 0

eval instant at 50m changes(http_requests[50m])
  {path="/foo"} 7
  {path="/bar"} 8
  {path="/biz"} 1

clear
load 5m
  x{a="b"} NaN NaN NaN
  x{a="c"} 0 NaN 0

eval instant at 15m changes(x[20m])
  {a="b"} 0
  {a="c"} 2
`,
  },
  {
    name: "*_over_time",
    file: "functions.test",
    script: `
load 10s
  metric 1 2 3 4 5
  metric2 1 2 3 4 Inf
  metric4 1 2 3 Inf -Inf
  metric8 9.988465674311579e+307 9.988465674311579e+307
  metric10 -9.988465674311579e+307 9.988465674311579e+307
  metric11 1 2 3 NaN NaN

eval instant at 55s avg_over_time(metric[10s])

eval instant at 55s avg_over_time(metric[20s])
  {} 5

eval instant at 55s avg_over_time(metric[1m])
  {} 3

eval instant at 55s sum_over_time(metric[1m])/count_over_time(metric[1m])
  {} 3

eval instant at 55s avg_over_time(metric2[1m])
  {} Inf

eval instant at 55s avg_over_time(metric4[1m])
  {} NaN

eval instant at 55s avg_over_time(metric8[1m])
  {} 9.988465674311579e+307

# The sum overflows float64; the average does not.
eval instant at 55s sum_over_time(metric8[1m])/count_over_time(metric8[1m])
  {} +Inf

eval instant at 55s avg_over_time(metric10[1m])
  {} 0

eval instant at 20s avg_over_time(metric11[1m])
  {} 2

eval instant at 55s avg_over_time(metric11[1m])
  {} NaN

clear
load 10s
  metric 1 1e100 1 -1e100

# Compensated summation keeps what 1e100 would swallow.
eval instant at 1m sum_over_time(metric[2m])
  {} 2

eval instant at 1m avg_over_time(metric[2m])
  {} 0.5

clear
load 10s
  data{type="numbers"} 2 0 3
  data{type="some_nan"} 2 0 NaN
  data{type="some_nan2"} 2 NaN 1
  data{type="some_nan3"} NaN 0 1
  data{type="only_nan"} NaN NaN NaN

eval instant at 1m min_over_time(data[2m])
  {type="numbers"} 0
  {type="some_nan"} 0
  {type="some_nan2"} 1
  {type="some_nan3"} 0
  {type="only_nan"} NaN

eval instant at 1m max_over_time(data[2m])
  {type="numbers"} 3
  {type="some_nan"} 2
  {type="some_nan2"} 2
  {type="some_nan3"} 1
  {type="only_nan"} NaN

eval instant at 1m last_over_time(data[2m])
  data{type="numbers"} 3
  data{type="some_nan"} NaN
  data{type="some_nan2"} 1
  data{type="some_nan3"} 1
  data{type="only_nan"} NaN

eval instant at 1m count_over_time(data[2m])
  {type="numbers"} 3
  {type="some_nan"} 3
  {type="some_nan2"} 3
  {type="some_nan3"} 3
  {type="only_nan"} 3

clear
load 10s
  data{test="two samples"} 0 1
  data{test="three samples"} 0 1 2
  data{test="uneven samples"} 0 1 4

eval instant at 1m quantile_over_time(0, data[2m])
  {test="two samples"} 0
  {test="three samples"} 0
  {test="uneven samples"} 0

eval instant at 1m quantile_over_time(0.5, data[2m])
  {test="two samples"} 0.5
  {test="three samples"} 1
  {test="uneven samples"} 1

eval instant at 1m quantile_over_time(0.75, data[2m])
  {test="two samples"} 0.75
  {test="three samples"} 1.5
  {test="uneven samples"} 2.5

eval instant at 1m quantile_over_time(0.8, data[2m])
  {test="two samples"} 0.8
  {test="three samples"} 1.6
  {test="uneven samples"} 2.8

eval instant at 1m quantile_over_time(-1, data[2m])
  {test="two samples"} -Inf
  {test="three samples"} -Inf
  {test="uneven samples"} -Inf

eval instant at 1m quantile_over_time(2, data[2m])
  {test="two samples"} +Inf
  {test="three samples"} +Inf
  {test="uneven samples"} +Inf
`,
  },
  {
    name: "aggregations with by and without",
    file: "aggregators.test",
    script: `
load 5m
  http_requests{job="api-server", instance="0", group="production"} 0+10x10
  http_requests{job="api-server", instance="1", group="production"} 0+20x10
  http_requests{job="api-server", instance="0", group="canary"} 0+30x10
  http_requests{job="api-server", instance="1", group="canary"} 0+40x10
  http_requests{job="app-server", instance="0", group="production"} 0+50x10
  http_requests{job="app-server", instance="1", group="production"} 0+60x10
  http_requests{job="app-server", instance="0", group="canary"} 0+70x10
  http_requests{job="app-server", instance="1", group="canary"} 0+80x10
  foo{job="api-server", instance="0", region="europe"} 0+90x10
  foo{job="api-server"} 0+100x10

eval instant at 50m SUM BY (group) (http_requests{job="api-server"})
  {group="canary"} 700
  {group="production"} 300

eval instant at 50m avg by (group) (http_requests{job="api-server"})
  {group="canary"} 350
  {group="production"} 150

eval instant at 50m count by (group) (http_requests{job="api-server"})
  {group="canary"} 2
  {group="production"} 2

eval instant at 50m sum without (instance) (http_requests{job="api-server"})
  {group="canary",job="api-server"} 700
  {group="production",job="api-server"} 300

eval instant at 50m sum by () (http_requests{job="api-server"})
  {} 1000

eval instant at 50m sum without () (http_requests{job="api-server",group="production"})
  {group="production",job="api-server",instance="0"} 100
  {group="production",job="api-server",instance="1"} 200

eval instant at 50m sum without (instance) (http_requests{job="api-server"} or foo)
  {group="canary",job="api-server"} 700
  {group="production",job="api-server"} 300
  {region="europe",job="api-server"} 900
  {job="api-server"} 1000

eval instant at 50m sum(http_requests) by (job) + min(http_requests) by (job) + max(http_requests) by (job) + avg(http_requests) by (job)
  {job="app-server"} 4550
  {job="api-server"} 1750

eval instant at 50m SUM(http_requests) BY (job, nonexistent)
  {job="api-server"} 1000
  {job="app-server"} 2600

eval instant at 50m MIN(http_requests) BY (job)
  {job="api-server"} 100
  {job="app-server"} 500

eval instant at 50m MAX(http_requests) BY (job)
  {job="api-server"} 400
  {job="app-server"} 800

eval instant at 50m stddev(http_requests)
  {} 229.12878474779

eval instant at 50m stdvar by (instance)(http_requests)
  {instance="0"} 50000
  {instance="1"} 50000

clear
load 5m
  http_requests{job="api-server", instance="0", group="production"} 1
  http_requests{job="api-server", instance="1", group="production"} 2
  http_requests{job="api-server", instance="0", group="canary"} NaN
  http_requests{job="api-server", instance="1", group="canary"} 3
  http_requests{job="api-server", instance="2", group="canary"} 4

eval instant at 0m max(http_requests)
  {} 4

eval instant at 0m min by (group) (http_requests)
  {group="production"} 1
  {group="canary"} 3

clear
load 10s
  data{test="two samples",point="a"} 0
  data{test="two samples",point="b"} 1
  data{test="three samples",point="a"} 0
  data{test="three samples",point="b"} 1
  data{test="three samples",point="c"} 2
  data{test="uneven samples",point="a"} 0
  data{test="uneven samples",point="b"} 1
  data{test="uneven samples",point="c"} 4
  foo .8

eval instant at 1m quantile without(point)(0.8, data)
  {test="two samples"} 0.8
  {test="three samples"} 1.6
  {test="uneven samples"} 2.8

eval instant at 1m quantile without(point)(scalar(foo), data)
  {test="two samples"} 0.8
  {test="three samples"} 1.6
  {test="uneven samples"} 2.8
`,
  },
  {
    name: "topk and bottomk",
    file: "aggregators.test",
    script: `
load 5m
  http_requests{job="api-server", instance="0", group="production"} 0+10x10
  http_requests{job="api-server", instance="1", group="production"} 0+20x10
  http_requests{job="api-server", instance="2", group="production"} NaN NaN NaN NaN NaN NaN NaN NaN NaN NaN NaN
  http_requests{job="api-server", instance="0", group="canary"} 0+30x10
  http_requests{job="api-server", instance="1", group="canary"} 0+40x10
  http_requests{job="app-server", instance="0", group="production"} 0+50x10
  http_requests{job="app-server", instance="1", group="production"} 0+60x10
  http_requests{job="app-server", instance="0", group="canary"} 0+70x10
  http_requests{job="app-server", instance="1", group="canary"} 0+80x10
  foo 3+0x10

eval_ordered instant at 50m topk(3, http_requests)
  http_requests{group="canary", instance="1", job="app-server"} 800
  http_requests{group="canary", instance="0", job="app-server"} 700
  http_requests{group="production", instance="1", job="app-server"} 600

eval_ordered instant at 50m bottomk(3, http_requests)
  http_requests{group="production", instance="0", job="api-server"} 100
  http_requests{group="production", instance="1", job="api-server"} 200
  http_requests{group="canary", instance="0", job="api-server"} 300

eval instant at 50m topk by (group) (1, http_requests)
  http_requests{group="production", instance="1", job="app-server"} 600
  http_requests{group="canary", instance="1", job="app-server"} 800

eval_ordered instant at 50m topk(3, http_requests{job="api-server",group="production"})
  http_requests{job="api-server", instance="1", group="production"} 200
  http_requests{job="api-server", instance="0", group="production"} 100
  http_requests{job="api-server", instance="2", group="production"} NaN

eval_ordered instant at 50m bottomk(3, http_requests{job="api-server",group="production"})
  http_requests{job="api-server", instance="0", group="production"} 100
  http_requests{job="api-server", instance="1", group="production"} 200
  http_requests{job="api-server", instance="2", group="production"} NaN

eval_ordered instant at 50m topk(scalar(foo), http_requests)
  http_requests{group="canary", instance="1", job="app-server"} 800
  http_requests{group="canary", instance="0", job="app-server"} 700
  http_requests{group="production", instance="1", job="app-server"} 600
`,
  },
  {
    name: "arithmetic, comparison and set operators with vector matching",
    file: "operators.test",
    script: `
load 5m
  http_requests_total{job="api-server", instance="0", group="production"} 0+10x10
  http_requests_total{job="api-server", instance="1", group="production"} 0+20x10
  http_requests_total{job="api-server", instance="0", group="canary"} 0+30x10
  http_requests_total{job="api-server", instance="1", group="canary"} 0+40x10
  http_requests_total{job="app-server", instance="0", group="production"} 0+50x10
  http_requests_total{job="app-server", instance="1", group="production"} 0+60x10
  http_requests_total{job="app-server", instance="0", group="canary"} 0+70x10
  http_requests_total{job="app-server", instance="1", group="canary"} 0+80x10
  vector_matching_a{l="x"} 0+1x100
  vector_matching_a{l="y"} 0+2x50
  vector_matching_b{l="x"} 0+4x25

eval instant at 50m SUM(http_requests_total) BY (job) - COUNT(http_requests_total) BY (job)
  {job="api-server"} 996
  {job="app-server"} 2596

eval instant at 50m 2 - SUM(http_requests_total) BY (job)
  {job="api-server"} -998
  {job="app-server"} -2598

eval instant at 50m -http_requests_total{job="api-server",instance="0",group="production"}
  {job="api-server",instance="0",group="production"} -100

eval instant at 50m +http_requests_total{job="api-server",instance="0",group="production"}
  http_requests_total{job="api-server",instance="0",group="production"} 100

eval instant at 50m - - - 1
  -1

eval instant at 50m -2^---1*3
  -1.5

eval instant at 50m 2/-2^---1*3+2
  -10

eval instant at 50m -10^3 * - SUM(http_requests_total) BY (job) ^ -1
  {job="api-server"} 1
  {job="app-server"} 0.38461538461538464

eval instant at 50m SUM(http_requests_total) BY (job) % 0.3
  {job="api-server"} 0.1
  {job="app-server"} 0.2

eval instant at 50m SUM(http_requests_total) BY (job) % 2 ^ 3 ^ 2
  {job="api-server"} 488
  {job="app-server"} 40

eval instant at 50m SUM(http_requests_total) BY (job) / 0
  {job="api-server"} +Inf
  {job="app-server"} +Inf

eval instant at 50m 0 * http_requests_total{group="canary", instance="0", job="api-server"} / 0
  {group="canary", instance="0", job="api-server"} NaN

eval instant at 50m http_requests_total{job="api-server", group="canary"} + rate(http_requests_total{job="api-server"}[10m]) * 5 * 60
  {group="canary", instance="0", job="api-server"} 330
  {group="canary", instance="1", job="api-server"} 440

eval instant at 50m rate(http_requests_total[25m]) * 25 * 60
  {group="canary", instance="0", job="api-server"} 150
  {group="canary", instance="0", job="app-server"} 350
  {group="canary", instance="1", job="api-server"} 200
  {group="canary", instance="1", job="app-server"} 400
  {group="production", instance="0", job="api-server"} 50
  {group="production", instance="0", job="app-server"} 249.99999999999997
  {group="production", instance="1", job="api-server"} 100
  {group="production", instance="1", job="app-server"} 300

eval instant at 50m http_requests_total{group="canary"} and http_requests_total{instance="0"}
  http_requests_total{group="canary", instance="0", job="api-server"} 300
  http_requests_total{group="canary", instance="0", job="app-server"} 700

eval instant at 50m (http_requests_total{group="canary"} + 1) and on(instance) http_requests_total{instance="0", group="production"}
  {group="canary", instance="0", job="api-server"} 301
  {group="canary", instance="0", job="app-server"} 701

eval instant at 50m (http_requests_total{group="canary"} + 1) or http_requests_total{instance="1"}
  {group="canary", instance="0", job="api-server"} 301
  {group="canary", instance="0", job="app-server"} 701
  {group="canary", instance="1", job="api-server"} 401
  {group="canary", instance="1", job="app-server"} 801
  http_requests_total{group="production", instance="1", job="api-server"} 200
  http_requests_total{group="production", instance="1", job="app-server"} 600

eval instant at 50m (http_requests_total{group="canary"} + 1) or on(instance) (http_requests_total or cpu_count or vector_matching_a)
  {group="canary", instance="0", job="api-server"} 301
  {group="canary", instance="0", job="app-server"} 701
  {group="canary", instance="1", job="api-server"} 401
  {group="canary", instance="1", job="app-server"} 801
  vector_matching_a{l="x"} 10
  vector_matching_a{l="y"} 20

eval instant at 50m http_requests_total{group="canary"} unless on(job) http_requests_total{instance="0"}

eval instant at 50m http_requests_total{group="canary"} unless ignoring(group) http_requests_total{instance="0"}
  http_requests_total{group="canary", instance="1", job="api-server"} 400
  http_requests_total{group="canary", instance="1", job="app-server"} 800

eval instant at 50m http_requests_total{group="canary"} / on(instance,job) http_requests_total{group="production"}
  {instance="0", job="api-server"} 3
  {instance="0", job="app-server"} 1.4
  {instance="1", job="api-server"} 2
  {instance="1", job="app-server"} 1.3333333333333333

eval instant at 50m http_requests_total{group="canary"} / ignoring(group) http_requests_total{group="production"}
  {instance="0", job="api-server"} 3
  {instance="0", job="app-server"} 1.4
  {instance="1", job="api-server"} 2
  {instance="1", job="app-server"} 1.3333333333333333

eval instant at 50m http_requests_total AND ON (dummy) vector(1)
  http_requests_total{group="canary", instance="0", job="api-server"} 300
  http_requests_total{group="canary", instance="0", job="app-server"} 700
  http_requests_total{group="canary", instance="1", job="api-server"} 400
  http_requests_total{group="canary", instance="1", job="app-server"} 800
  http_requests_total{group="production", instance="0", job="api-server"} 100
  http_requests_total{group="production", instance="0", job="app-server"} 500
  http_requests_total{group="production", instance="1", job="api-server"} 200
  http_requests_total{group="production", instance="1", job="app-server"} 600

eval instant at 50m SUM(http_requests_total) BY (job) > 1000
  {job="app-server"} 2600

eval instant at 50m 1000 < SUM(http_requests_total) BY (job)
  {job="app-server"} 2600

eval instant at 50m SUM(http_requests_total) BY (job) == bool 1000
  {job="api-server"} 1
  {job="app-server"} 0

eval instant at 50m SUM(http_requests_total) BY (job) != bool SUM(http_requests_total) BY (job)
  {job="api-server"} 0
  {job="app-server"} 0

eval instant at 50m 0 == bool 1
  0

eval instant at 50m http_requests_total{job="api-server", instance="0", group="production"} == bool 100
  {job="api-server", instance="0", group="production"} 1

clear
load 5m
  node_var{instance="abc",job="node"} 2
  node_role{instance="abc",job="node",role="prometheus"} 1
  node_cpu{instance="abc",job="node",mode="idle"} 3
  node_cpu{instance="abc",job="node",mode="user"} 1
  node_cpu{instance="def",job="node",mode="idle"} 8
  node_cpu{instance="def",job="node",mode="user"} 2
  random{foo="bar"} 1

eval instant at 1m node_role * on (instance) group_right (role) node_var
  {instance="abc",job="node",role="prometheus"} 2

eval instant at 1m node_var * on (instance) group_left (role) node_role
  {instance="abc",job="node",role="prometheus"} 2

eval instant at 1m node_var * ignoring (role) group_left (role) node_role
  {instance="abc",job="node",role="prometheus"} 2

eval instant at 1m node_cpu * ignoring (role, mode) group_left (role) node_role
  {instance="abc",job="node",mode="idle",role="prometheus"} 3
  {instance="abc",job="node",mode="user",role="prometheus"} 1

eval instant at 1m node_cpu / on (instance) group_left sum by (instance,job)(node_cpu)
  {instance="abc",job="node",mode="idle"} .75
  {instance="abc",job="node",mode="user"} .25
  {instance="def",job="node",mode="idle"} .80
  {instance="def",job="node",mode="user"} .20

eval instant at 1m sum by (mode, job)(node_cpu) / on (job) group_left sum by (job)(node_cpu)
  {job="node",mode="idle"} 0.7857142857142857
  {job="node",mode="user"} 0.21428571428571427

# Many-to-many matching is an error.
eval instant at 1m node_cpu + on(job) node_cpu
  expect fail
`,
  },
  {
    name: "histogram_quantile over classic buckets",
    file: "histograms.test",
    script: `
load 5m
  testhistogram_bucket{le="0.1", start="positive"} 0+5x10
  testhistogram_bucket{le=".2", start="positive"} 0+7x10
  testhistogram_bucket{le="1e0", start="positive"} 0+11x10
  testhistogram_bucket{le="+Inf", start="positive"} 0+12x10
  testhistogram_bucket{le="-.2", start="negative"} 0+1x10
  testhistogram_bucket{le="-0.1", start="negative"} 0+2x10
  testhistogram_bucket{le="0.3", start="negative"} 0+2x10
  testhistogram_bucket{le="+Inf", start="negative"} 0+3x10
  testhistogram2_bucket{le="0"} 0+0x10
  testhistogram2_bucket{le="2"} 0+1x10
  testhistogram2_bucket{le="4"} 0+2x10
  testhistogram2_bucket{le="6"} 0+3x10
  testhistogram2_bucket{le="+Inf"} 0+3x10
  request_duration_seconds_bucket{job="job1", instance="ins1", le="0.1"} 0+1x10
  request_duration_seconds_bucket{job="job1", instance="ins1", le="0.2"} 0+3x10
  request_duration_seconds_bucket{job="job1", instance="ins1", le="+Inf"} 0+4x10
  request_duration_seconds_bucket{job="job1", instance="ins2", le="0.1"} 0+2x10
  request_duration_seconds_bucket{job="job1", instance="ins2", le="0.2"} 0+5x10
  request_duration_seconds_bucket{job="job1", instance="ins2", le="+Inf"} 0+6x10
  request_duration_seconds_bucket{job="job2", instance="ins1", le="0.1"} 0+3x10
  request_duration_seconds_bucket{job="job2", instance="ins1", le="0.2"} 0+4x10
  request_duration_seconds_bucket{job="job2", instance="ins1", le="+Inf"} 0+6x10
  request_duration_seconds_bucket{job="job2", instance="ins2", le="0.1"} 0+4x10
  request_duration_seconds_bucket{job="job2", instance="ins2", le="0.2"} 0+7x10
  request_duration_seconds_bucket{job="job2", instance="ins2", le="+Inf"} 0+9x10
  mixed_bucket{job="job1", instance="ins1", le="0.1"} 0+1x10
  mixed_bucket{job="job1", instance="ins1", le="0.2"} 0+1x10
  mixed_bucket{job="job1", instance="ins1", le="2e-1"} 0+1x10
  mixed_bucket{job="job1", instance="ins1", le="2.0e-1"} 0+1x10
  mixed_bucket{job="job1", instance="ins1", le="+Inf"} 0+4x10
  mixed_bucket{job="job1", instance="ins2", le="+inf"} 0+0x10
  mixed_bucket{job="job1", instance="ins2", le="+Inf"} 0+0x10

eval instant at 50m histogram_quantile(-0.1, testhistogram_bucket)
  {start="positive"} -Inf
  {start="negative"} -Inf

eval instant at 50m histogram_quantile(1.01, testhistogram_bucket)
  {start="positive"} +Inf
  {start="negative"} +Inf

eval instant at 50m histogram_quantile(NaN, testhistogram_bucket)
  {start="positive"} NaN
  {start="negative"} NaN

eval instant at 50m histogram_quantile(0, testhistogram_bucket)
  {start="positive"} 0
  {start="negative"} -0.2

eval instant at 50m histogram_quantile(1, testhistogram_bucket)
  {start="positive"} 1
  {start="negative"} 0.3

eval instant at 50m histogram_quantile(0.2, testhistogram_bucket)
  {start="positive"} 0.048
  {start="negative"} -0.2

eval instant at 50m histogram_quantile(0.5, testhistogram_bucket)
  {start="positive"} 0.15
  {start="negative"} -0.15

eval instant at 50m histogram_quantile(0.8, testhistogram_bucket)
  {start="positive"} 0.72
  {start="negative"} 0.3

eval instant at 50m histogram_quantile(0.8, rate(testhistogram_bucket[10m]))
  {start="positive"} 0.72
  {start="negative"} 0.3

eval instant at 7m histogram_quantile(1/6, testhistogram2_bucket)
  {} 1

eval instant at 7m histogram_quantile(0.5, testhistogram2_bucket)
  {} 3

eval instant at 47m histogram_quantile(5/6, rate(testhistogram2_bucket[15m]))
  {} 5

eval instant at 50m histogram_quantile(0.3, sum(rate(request_duration_seconds_bucket[10m])) by (le))
  {} 0.075

eval instant at 50m histogram_quantile(0.5, sum(rate(request_duration_seconds_bucket[10m])) by (le))
  {} 0.1277777777777778

eval instant at 50m histogram_quantile(0.5, avg(rate(request_duration_seconds_bucket[10m])) by (le))
  {} 0.12777777777777778

eval instant at 50m histogram_quantile(0.3, sum(rate(request_duration_seconds_bucket[10m])) by (le, job))
  {job="job1"} 0.1
  {job="job2"} 0.0642857142857143

eval instant at 50m histogram_quantile(0.5, rate(request_duration_seconds_bucket[10m]))
  {instance="ins1", job="job1"} 0.15
  {instance="ins2", job="job1"} 0.13333333333333333
  {instance="ins1", job="job2"} 0.1
  {instance="ins2", job="job2"} 0.11666666666666667
`,
  },
  {
    name: "label_replace, vector, time, clamp, sgn, absent",
    file: "functions.test",
    script: `
load 5m
  testmetric{src="source-value-10",dst="original-destination-value"} 0
  testmetric{src="source-value-20",dst="original-destination-value"} 1

eval instant at 0m label_replace(testmetric, "dst", "destination-value-$1", "src", "source-value-(.*)")
  testmetric{src="source-value-10",dst="destination-value-10"} 0
  testmetric{src="source-value-20",dst="destination-value-20"} 1

eval instant at 0m label_replace(testmetric, "dst", "destination-value-$1", "src", "value-(.*)")
  testmetric{src="source-value-10",dst="original-destination-value"} 0
  testmetric{src="source-value-20",dst="original-destination-value"} 1

eval instant at 0m label_replace(testmetric, "dst", "$1-value-$2", "src", "(.*)-value-(.*)")
  testmetric{src="source-value-10",dst="source-value-10"} 0
  testmetric{src="source-value-20",dst="source-value-20"} 1

eval instant at 0m label_replace(testmetric, "dst", "value-$1", "nonexistent-src", "source-value-(.*)")
  testmetric{src="source-value-10",dst="original-destination-value"} 0
  testmetric{src="source-value-20",dst="original-destination-value"} 1

eval instant at 0m label_replace(testmetric, "dst", "value-$1", "nonexistent-src", "(.*)")
  testmetric{src="source-value-10",dst="value-"} 0
  testmetric{src="source-value-20",dst="value-"} 1

eval instant at 0m label_replace((((testmetric))), (("dst")), (("value-$1")), (("src")), (("non-matching-regex")))
  testmetric{src="source-value-10",dst="original-destination-value"} 0
  testmetric{src="source-value-20",dst="original-destination-value"} 1

eval instant at 0m label_replace(testmetric, "dst", "", "dst", ".*")
  testmetric{src="source-value-10"} 0
  testmetric{src="source-value-20"} 1

eval instant at 0m label_replace(testmetric, "dst", "value-$1", "src", "(.*")
  expect fail

eval instant at 0m label_replace(testmetric, "\xff", "", "src", "(.*)")
  expect fail

eval instant at 0m label_replace(testmetric, "src", "", "", "")
  expect fail

clear
eval instant at 0m vector(1)
  {} 1

eval instant at 5s vector(time())
  {} 5

eval instant at 60m vector(time())
  {} 3600

load 5m
  test_clamp{src="clamp-a"} -50
  test_clamp{src="clamp-b"} 0
  test_clamp{src="clamp-c"} 100

eval instant at 0m clamp_max(test_clamp, 75)
  {src="clamp-a"} -50
  {src="clamp-b"} 0
  {src="clamp-c"} 75

eval instant at 0m clamp_min(test_clamp, -25)
  {src="clamp-a"} -25
  {src="clamp-b"} 0
  {src="clamp-c"} 100

eval instant at 0m clamp_max((clamp_min(test_clamp, (-20))), (70))
  {src="clamp-a"} -20
  {src="clamp-b"} 0
  {src="clamp-c"} 70

eval instant at 0m clamp(test_clamp, 0, NaN)
  {src="clamp-a"} NaN
  {src="clamp-b"} NaN
  {src="clamp-c"} NaN

eval instant at 0m clamp(test_clamp, 5, -5)

clear
load 5m
  test_sgn{src="sgn-a"} -Inf
  test_sgn{src="sgn-b"} Inf
  test_sgn{src="sgn-c"} NaN
  test_sgn{src="sgn-d"} -50
  test_sgn{src="sgn-e"} 0
  test_sgn{src="sgn-f"} 100

eval instant at 0m sgn(test_sgn)
  {src="sgn-a"} -1
  {src="sgn-b"} 1
  {src="sgn-c"} NaN
  {src="sgn-d"} -1
  {src="sgn-e"} 0
  {src="sgn-f"} 1

clear
load 5m
  http_requests{job="api-server", instance="0", group="production"} 0+10x10

eval instant at 50m absent(nonexistent)
  {} 1

eval instant at 50m absent(nonexistent{job="testjob", instance="testinstance", method=~".x"})
  {instance="testinstance", job="testjob"} 1

eval instant at 50m absent(nonexistent{job="testjob",job="testjob2",foo="bar"})
  {foo="bar"} 1

eval instant at 50m absent(sum(nonexistent{job="testjob", instance="testinstance"}))
  {} 1

eval instant at 50m absent(http_requests)

eval instant at 50m absent_over_time(http_requests_total{handler="/foo"}[5m])
  {handler="/foo"} 1
`,
  },
  {
    name: "staleness markers end a series; ranges leave them out",
    file: "staleness.test",
    script: `
load 10s
  metric 0 1 stale 2

eval instant at 10s metric
  {__name__="metric"} 1

eval instant at 20s metric

eval instant at 30s metric
  {__name__="metric"} 2

eval instant at 40s metric
  {__name__="metric"} 2

eval instant at 30s count_over_time(metric[1m])
  {} 3

eval instant at 10s count_over_time(metric[1s])
  {} 1

eval instant at 20s count_over_time(metric[1s])
`,
  },
  {
    // Prometheus 3 (engine.go: vectorSelectorSingle, "t <= refTime - lookbackDelta" is out):
    // the lookback and range windows are open on the left.
    name: "the 5-minute lookback and offset",
    file: "selectors.test",
    script: `
load 10s
  metric 0

eval instant at 299s metric
  {__name__="metric"} 0

eval instant at 300s metric

clear
load 10s
  http_requests{job="api-server", instance="0", group="production"} 0+10x1000 100+30x1000
  http_requests{job="api-server", instance="1", group="production"} 0+20x1000 200+30x1000

eval instant at 8000s rate(http_requests[1m])
  {job="api-server", instance="0", group="production"} 1
  {job="api-server", instance="1", group="production"} 2

eval instant at 18000s rate(http_requests{instance!="3"}[1m] offset 10000s)
  {job="api-server", instance="0", group="production"} 1
  {job="api-server", instance="1", group="production"} 2

eval instant at 4000s http_requests offset 1000s
  http_requests{job="api-server", instance="0", group="production"} 3000
  http_requests{job="api-server", instance="1", group="production"} 6000

eval instant at 1000s http_requests offset -1000s
  http_requests{job="api-server", instance="0", group="production"} 2000
  http_requests{job="api-server", instance="1", group="production"} 4000

eval instant at 8000s rate(http_requests{job=~".*server", instance=~"1"}[1m])
  {job="api-server", instance="1", group="production"} 2

eval instant at 8000s rate(http_requests{job!~"api.*", instance!="0"}[1m])

eval instant at 8000s {__name__=~"http_req.*", instance!~"0"}
  http_requests{job="api-server", instance="1", group="production"} 16000
`,
  },
  {
    name: "deriv, predict_linear, sort and sort_desc",
    file: "functions.test",
    script: `
load 5m
  testcounter_reset_middle_total 0+10x4 0+10x5
  http_requests_total{job="app-server", instance="1", group="canary"} 0+80x10
  http_requests_inf{job="app-server", instance="1", group="canary"} -Inf 0+80x10 Inf

eval instant at 50m deriv(http_requests_total{group="canary", instance="1", job="app-server"}[50m])
  {group="canary", instance="1", job="app-server"} 0.26666666666666666

eval instant at 50m deriv(testcounter_reset_middle_total[100m])
  {} 0.010606060606060607

eval instant at 100m deriv(http_requests_inf[100m])
  {job="app-server", instance="1", group="canary"} NaN

eval instant at 50m predict_linear(testcounter_reset_middle_total[50m], 3600)
  {} 70

eval instant at 50m predict_linear(testcounter_reset_middle_total[50m], 1h)
  {} 70

eval instant at 100m predict_linear(http_requests_inf[100m], 6000)
  {job="app-server", instance="1", group="canary"} NaN

eval instant at 50m predict_linear(http_requests_total[50m], 3600) - (http_requests_total + deriv(http_requests_total[50m]) * 3600)
  {group="canary", instance="1", job="app-server"} 0

clear
load 5m
  http_requests{job="api-server", instance="0", group="production"} 0+10x10
  http_requests{job="api-server", instance="1", group="production"} 0+20x10
  http_requests{job="api-server", instance="0", group="canary"} 0+30x10
  http_requests{job="api-server", instance="1", group="canary"} 0+40x10
  http_requests{job="api-server", instance="2", group="canary"} NaN NaN NaN NaN NaN NaN NaN NaN NaN NaN NaN
  http_requests{job="app-server", instance="0", group="production"} 0+50x10
  http_requests{job="app-server", instance="1", group="production"} 0+60x10
  http_requests{job="app-server", instance="0", group="canary"} 0+70x10
  http_requests{job="app-server", instance="1", group="canary"} 0+80x10

eval_ordered instant at 50m sort(http_requests)
  http_requests{group="production", instance="0", job="api-server"} 100
  http_requests{group="production", instance="1", job="api-server"} 200
  http_requests{group="canary", instance="0", job="api-server"} 300
  http_requests{group="canary", instance="1", job="api-server"} 400
  http_requests{group="production", instance="0", job="app-server"} 500
  http_requests{group="production", instance="1", job="app-server"} 600
  http_requests{group="canary", instance="0", job="app-server"} 700
  http_requests{group="canary", instance="1", job="app-server"} 800
  http_requests{group="canary", instance="2", job="api-server"} NaN

eval_ordered instant at 50m sort_desc(http_requests)
  http_requests{group="canary", instance="1", job="app-server"} 800
  http_requests{group="canary", instance="0", job="app-server"} 700
  http_requests{group="production", instance="1", job="app-server"} 600
  http_requests{group="production", instance="0", job="app-server"} 500
  http_requests{group="canary", instance="1", job="api-server"} 400
  http_requests{group="canary", instance="0", job="api-server"} 300
  http_requests{group="production", instance="1", job="api-server"} 200
  http_requests{group="production", instance="0", job="api-server"} 100
  http_requests{group="canary", instance="2", job="api-server"} NaN
`,
  },
];

describe("PromQL evaluation against Prometheus' test data", () => {
  for (const c of cases) {
    it(`${c.name} (promql/promqltest/testdata/${c.file})`, async () => {
      await runScript(c.script);
    });
  }
});

describe("PromQL evaluation, expectations computed here", () => {
  it("stddev_over_time and stdvar_over_time: the population deviation of a range's samples", async () => {
    // 0 8 8 2 3: mean 4.2, squared deviations 17.64 + 14.44 + 14.44 + 4.84 + 1.44 = 52.8, over 5.
    await runScript(`
load 10s
  metric 0 8 8 2 3

eval instant at 1m stdvar_over_time(metric[2m])
  {} 10.56

eval instant at 1m stddev_over_time(metric[2m])
  {} 3.2496153618543846
`);
  });
});
