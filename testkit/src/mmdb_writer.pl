# Writes a MaxMind DB (.mmdb) from a JSON spec on stdin, with Debian's
# libmaxmind-db-writer-perl: {"database_type": "...", "networks":
# [["127.0.0.2/32", {record}], ...]}. Usage: perl mmdb_writer.pl OUT.mmdb
# Records use the GeoIP2 City/Country and GeoLite2 ASN keys below; any
# other key is refused, so a typo in a test fails loudly.
use strict;
use warnings;
use JSON::PP;
use MaxMind::DB::Writer::Tree;

my ($out) = @ARGV;
die "usage: mmdb_writer.pl OUT.mmdb\n" unless defined $out;
my $spec = decode_json(do { local $/; <STDIN> });
my %types = (
    country                        => 'map',
    registered_country             => 'map',
    city                           => 'map',
    location                       => 'map',
    names                          => 'map',
    iso_code                       => 'utf8_string',
    en                             => 'utf8_string',
    de                             => 'utf8_string',
    latitude                       => 'double',
    longitude                      => 'double',
    autonomous_system_number       => 'uint32',
    autonomous_system_organization => 'utf8_string',
    isp                            => 'utf8_string',
    organization                   => 'utf8_string',
);
my $tree = MaxMind::DB::Writer::Tree->new(
    ip_version    => 6,
    record_size   => 24,
    database_type => $spec->{database_type},
    languages     => ['en'],
    description   => { en => 'pharox-exporter test database' },
    # Loopback is "reserved": the tests map 127.0.0.x on purpose.
    remove_reserved_networks => 0,
    map_key_type_callback    => sub { $types{ $_[0] } // die "no type for key $_[0]\n" },
);
for my $n (@{ $spec->{networks} }) {
    $tree->insert_network($n->[0], $n->[1]);
}
open my $fh, '>:raw', $out or die "$out: $!\n";
$tree->write_tree($fh);
close $fh or die "$out: $!\n";
