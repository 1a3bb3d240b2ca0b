# chart.gp - bar chart of throughput per workload, one bar per runtime,
# log scale. Usage:
#   gnuplot -e "datafile='results/x.dat'; outfile='results/latest.svg'; subtitle='...'" bench/chart.gp
# The data file is what bench/table.py --dat writes: a header line
# "workload RUNTIME...", then one line per workload; NaN where a runtime
# has no figure (n/a, timeout, failure).
if (!exists("datafile")) datafile = 'bench/results/latest.dat'
if (!exists("outfile")) outfile = 'bench/results/latest.svg'
if (!exists("subtitle")) subtitle = ''

set terminal svg size 1100,560 dynamic enhanced font 'sans,12' background rgb 'white'
set output outfile
set title "genserver vs peers: throughput per workload (higher is better; spawn: servers started/s)\n{/*0.8 ".subtitle."}"
set style data histograms
set style histogram clustered gap 1.5
set style fill solid 0.85 border rgb 'black'
set boxwidth 0.9
set logscale y 10
set format y '10^{%L}'
set yrange [1e3:*]
set grid ytics
set ylabel 'operations per second (log scale)'
set xtics nomirror noenhanced font ',10'
set bmargin 3
set key top right noenhanced
set datafile missing 'NaN'
ncols = int(system("head -1 '".datafile."' | wc -w"))
colors = "#d62728 #1f77b4 #2ca02c #ff7f0e #9467bd #8c564b"
plot for [i=2:ncols] datafile using i:xtic(1) title columnheader(i) linecolor rgb word(colors, i-1)
